"""Streaming: the cached one-frame step gives exactly what one forward over the whole sequence gives.

Through models.streaming.stream (the step alone) and through tracking.TrackManager's cache pool
(the node's path: rings, ages, restarts, people joining and leaving), for PoseMoE and the entangled
baseline, with and without an output delay; and the Lifter's torch and onnxruntime steps agree.
"""
import numpy as np
import pytest
import torch

from posemoe_ros.models import build_model
from posemoe_ros.models.streaming import StreamingStep, cache_shape, empty_cache, stream
from posemoe_ros.pipeline.tracking import TrackManager

W = 6  # a short window, so the sequences below run well past it


def model_with_weights(name: str, seed: int = 0, **overrides):
    """A small streaming model with random (not zero) weights everywhere, delay tables included."""
    torch.manual_seed(seed)
    kw = dict(num_frames=W, dim=16, heads=2, max_lookahead=3, **overrides)
    kw.update(encoder_layers=1, decoder_layers=2) if name == "posemoe" else kw.update(layers=3)
    model = build_model(name, "s", **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def keypoints(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 17, 3, generator=g) * 0.3
    x[..., 2] = torch.rand(B, T, 17, generator=g)
    return x


@pytest.mark.parametrize("name", ["posemoe", "entangled"])
@pytest.mark.parametrize("delay", [0, 2])
@pytest.mark.parametrize("scale_input", [False, True])
def test_frame_by_frame_equals_one_forward_over_the_whole_sequence(name, delay, scale_input):
    model = model_with_weights(name, scale_input=scale_input)
    x = keypoints(3, 5 * W)
    with torch.no_grad():
        whole = model(x, delay=delay)
    streamed = stream(model, x, delay)
    assert torch.isnan(streamed[:, :delay]).all()
    torch.testing.assert_close(streamed[:, delay:], whole[:, delay:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["posemoe", "entangled"])
def test_track_pool_cache_with_people_joining_leaving_gaps_and_a_reset(name):
    """Each person's streamed output equals the forward over their frames since their (re)start."""
    model = model_with_weights(name, seed=3)
    step = StreamingStep(model)
    tracks = TrackManager(W, timeout=0.5, max_gap=0.2, cache_shape=cache_shape(model))
    rng = np.random.default_rng(0)
    fps = 30.0
    # who is in view at each frame; "b" joins late and leaves, "c" has a gap > max_gap (restart);
    # at frame 40 the stamps jump back (a looping bag): every track resets
    frames = []
    for n in range(60):
        people = ["a"] + (["b"] if 7 <= n < 30 else []) + (["c"] if not 20 <= n < 28 else [])
        stamp = (n if n < 40 else n - 40) / fps
        frames.append((stamp, people))
    inputs = {p: rng.normal(0, 0.3, (60, 17, 3)).astype(np.float32) for p in "abc"}
    for p in inputs.values():
        p[..., 2] = rng.uniform(0.1, 1, (60, 17))
    streamed = {p: {} for p in "abc"}
    starts = {}  # person -> frame index of their current (re)start
    last_stamp = -1.0
    for n, (stamp, people) in enumerate(frames):
        if stamp < last_stamp:
            starts.clear()
        last_stamp = stamp
        for p in people:
            seen_before = [m for m in range(n) if p in frames[m][1] and m >= starts.get(p, n)]
            if p not in starts or not seen_before or stamp - frames[seen_before[-1]][0] > 0.2:
                starts[p] = n
        x = np.stack([inputs[p][n] for p in people])
        tracks.update(people, x, stamp)
        past, ages = tracks.cache(people)
        with torch.no_grad():
            pose, new = step(torch.from_numpy(x), torch.from_numpy(past), torch.from_numpy(ages), 0)
        tracks.store_cache(people, new.numpy())
        for i, p in enumerate(people):
            streamed[p][n] = (starts[p], pose[i].numpy())
    checked = 0
    for p, outputs in streamed.items():
        for n, (start, pose) in outputs.items():
            own = [m for m in range(start, n + 1) if p in frames[m][1]]  # their frames since the restart
            with torch.no_grad():
                whole = model(torch.from_numpy(inputs[p][own])[None])[0, -1].numpy()
            np.testing.assert_allclose(pose, whole, rtol=0, atol=1e-5, err_msg=f"{p} frame {n}")
            checked += 1
    assert checked == sum(len(people) for _, people in frames)
    # the restarts really happened: c restarted after its gap, and everyone after the jump back
    assert streamed["c"][30][0] == 28 and streamed["a"][45][0] == 40


def test_lifter_torch_and_onnxruntime_steps_agree(tmp_path, monkeypatch):
    from posemoe_ros.pipeline.lifter import Lifter, LifterConfig
    from posemoe_ros.tools.scenario import Scenario, ScenarioConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = model_with_weights("posemoe", seed=5)
    scenario = Scenario(ScenarioConfig(duration=3.0, num_people=3, seed=2))
    results = {}
    for backend in ("torch", "onnxruntime"):
        lifter = Lifter(model, LifterConfig(backend=backend, lookahead=1, body_height=1.7))
        assert lifter.streaming and lifter.backend == backend
        out = []
        for i in range(scenario.num_frames):
            f = scenario.frame(i)
            stamp_ns = int(round(f.t * 1e9))
            lifted = lifter.process(stamp_ns, "coco17", f.ids, f.uv, f.conf, scenario.K, np.zeros(5))
            out.append({p.id: p.positions for p in (lifted.people or [])})
        results[backend] = out
    pairs = [(a[i], b[i]) for a, b in [(results["torch"], results["onnxruntime"])] for i in range(len(a))]
    assert sum(len(a) for a, _ in pairs) > 50  # people were lifted
    for a, b in pairs:
        assert a.keys() == b.keys()
        for i in a:
            np.testing.assert_allclose(a[i], b[i], rtol=0, atol=1e-4)


def test_fixed_batch_sessions_agree_with_the_model_and_answer_every_call_alike(tmp_path):
    from posemoe_ros.models.export import FixedBatchSessions, OnnxStep, cached_onnx

    model = model_with_weights("posemoe", seed=3)
    path = cached_onnx(model, tmp_path)
    dynamic, step = OnnxStep(path), OnnxStep(path, fixed_batches=4)   # sizes 1-4 built up front
    past, ages = empty_cache(model, 3)
    past.normal_()
    ages[:, :3] = torch.tensor([1, 2, 3])          # three frames cached, the rest empty
    x = keypoints(3, 1)[:, 0]
    with torch.no_grad():
        want_pose, want_kv = StreamingStep(model)(x, past, ages, torch.tensor(1))
    args = (x.numpy(), past.numpy(), ages.numpy(), 1)
    answers = [step(*args) for _ in range(3)]      # the first call already runs on the 3-people graph
    session = step.fixed.get(3)
    assert session is not None and step.fixed.get(3) is session and not step.fixed.failed
    for pose, kv in answers:
        np.testing.assert_allclose(pose, want_pose.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(kv, want_kv.numpy(), rtol=0, atol=1e-5)
        # bit-identical every time: no call may run on another graph (the dynamic one agrees to ~1e-6)
        assert np.array_equal(pose, answers[0][0]) and np.array_equal(kv, answers[0][1])
    np.testing.assert_allclose(answers[0][0], dynamic(*args)[0], rtol=0, atol=1e-5)
    assert step.fixed.get(5) is None               # above fixed_batches: the dynamic graph serves
    lazy = FixedBatchSessions(dynamic._new_session, max_batch=4, prebuild=1)
    assert lazy.get(3) is not None and lazy.get(3) is lazy.get(3)   # built on first sight, then kept
    feed = dict(zip(("keypoints", "past_kv", "ages", "delay"), args[:3] + (np.array(1, np.int64),)))
    assert np.array_equal(lazy.get(3).run(None, feed)[0], answers[0][0])
    assert list(tmp_path.glob("*.onnx")) == [path]  # one export; fixed sessions reuse its file
