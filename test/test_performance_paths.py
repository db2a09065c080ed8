"""The fast paths behave like the simple ones: the pooled track ring buffers, the onnxruntime
backend (cached export, run-time switch) and the node's newest-input-only lifting under a flood.
Speed itself is measured by bench/ (docs/performance.md), never asserted here."""
import tempfile
import threading
from collections import deque

import numpy as np
import pytest
from rclpy.parameter import Parameter

from posemoe_ros.geometry.camera import project
from posemoe_ros.models.export import OnnxStep, cached_onnx, onnx_cache_dir
from posemoe_ros.models.streaming import empty_cache
from posemoe_ros.pipeline.lifter import Lifter, LifterConfig
from posemoe_ros.pipeline.tracking import TrackManager
from posemoe_ros.ros.latest_inputs import LatestInputs

from test_lift_node import K, keypoint_msg, synthetic_person


# ---- track ring buffers against a plain per-track reference -----------------------------------
class ReferenceTracks:
    """The rules of tracking.py written the obvious way: a deque of (stamp, frame) per id."""

    def __init__(self, T, timeout, max_gap, max_tracks):
        self.T, self.timeout, self.max_gap, self.max_tracks = T, timeout, max_gap, max_tracks
        self.tracks, self.last = {}, -np.inf  # dict order = least recently updated first

    def update(self, ids, frames, stamp):
        if stamp < self.last:
            self.tracks.clear()
        self.last = stamp
        for i in [i for i, (q, _) in self.tracks.items() if stamp - q[-1][0] > self.timeout]:
            del self.tracks[i]
        for i, f in zip(ids, frames):
            q, n = self.tracks.pop(i, (deque(maxlen=self.T), 0))
            if n == 0 or stamp < q[-1][0] or stamp - q[-1][0] > self.max_gap:
                q, n = deque([(stamp, f)] * self.T, maxlen=self.T), 1
            elif stamp == q[-1][0]:
                q[-1] = (stamp, f)
            else:
                q.append((stamp, f))
                n = min(n + 1, self.T)
            self.tracks[i] = (q, n)
        while len(self.tracks) > self.max_tracks:
            del self.tracks[next(iter(self.tracks))]

    def window(self, i):
        q, n = self.tracks[i]
        return np.stack([f for _, f in q]), np.array([s for s, _ in q]), n


def test_pooled_ring_buffers_match_the_reference_through_gaps_repeats_resets_and_evictions():
    rng = np.random.default_rng(0)
    args = dict(timeout=0.5, max_gap=0.2, max_tracks=6)
    pool, ref = TrackManager(5, **args), ReferenceTracks(5, **args)
    stamp = 0.0
    for step in range(600):
        r = rng.random()
        if r < 0.02:
            stamp = max(0.0, stamp - 1.0)  # a looping bag
        elif r < 0.10:
            stamp += 0.3  # gap longer than max_gap
        elif r > 0.15:  # else: the same stamp again
            stamp += 0.033
        ids = [str(i) for i in rng.choice(10, size=rng.integers(0, 5), replace=False)]
        frames = rng.normal(size=(len(ids), 17, 3)).astype(np.float32)
        pool.update(ids, frames, stamp)
        ref.update(ids, frames, stamp)
        assert pool.ids == list(ref.tracks), step
        if ref.tracks:
            w, s = pool.windows(pool.ids)
            for n, i in enumerate(pool.ids):
                fw, fs, num = ref.window(i)
                np.testing.assert_array_equal(w[n], fw)
                np.testing.assert_array_equal(s[n], fs)
                assert pool.num_real_frames(i) == num and pool.stamp_at(i, 1) == fs[-2]
            np.testing.assert_array_equal(pool.num_real_frames_of(pool.ids + ["gone"]),
                                          [ref.tracks[i][1] for i in pool.ids] + [0])
    assert pool.windows([])[0].shape == (0, 5, 17, 3)
    assert list(TrackManager(5).num_real_frames_of(["nobody"])) == [0]


# ---- the newest-input mailbox ---------------------------------------------------------------------
def test_mailbox_keeps_the_newest_per_camera_and_counts_what_it_replaces():
    box = LatestInputs()
    assert box.put("cam_a", 1) is False
    assert box.put("cam_b", 10) is False
    assert box.put("cam_a", 2) is True  # 1 was never taken: dropped
    assert box.take(0) == 10  # cam_b has waited longest since its pending item arrived
    assert box.take(0) == 2
    assert box.take(0.01) is None
    box.put("cam_a", 3)
    assert box.clear() == 1 and len(box) == 0

    got = []
    taker = threading.Thread(target=lambda: got.append(box.take(timeout=30)))
    taker.start()
    box.close()  # wakes the waiting taker at once
    taker.join(5)
    assert not taker.is_alive() and got == [None] and box.closed


# ---- onnxruntime backend ------------------------------------------------------------------------
def _lift_sequence(lifter, uv, people=3):
    out = []
    for i in range(len(uv)):
        frame_uv = np.stack([uv[i] + [120.0 * p - 120.0, 0.0] for p in range(people)])
        frame = lifter.process(1_700_000_000_000_000_000 + i * 33_333_333, "h36m17", [str(p) for p in range(people)],
                               frame_uv, np.full(frame_uv.shape[:2], 0.9), K, np.zeros(5))
        out.append(np.stack([p.positions for p in frame.people]))
    return np.stack(out)


def test_onnxruntime_backend_matches_torch_and_caches_its_export(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uv = project(synthetic_person(1.0), K)
    torch_lifter = Lifter.from_weights(None, LifterConfig(device="cpu", backend="torch"))
    ort_lifter = Lifter.from_weights(None, LifterConfig(device="cpu", backend="onnxruntime"))
    assert (torch_lifter.backend, ort_lifter.backend) == ("torch", "onnxruntime")
    (cached,) = (tmp_path / "cache" / "posemoe_ros").glob("*.onnx")
    mtime = cached.stat().st_mtime_ns
    np.testing.assert_allclose(_lift_sequence(ort_lifter, uv), _lift_sequence(torch_lifter, uv), atol=1e-4)

    # The same weights again: the file is reused, not re-exported; switching at run time keeps tracks.
    assert cached_onnx(torch_lifter.model) == cached and cached.stat().st_mtime_ns == mtime
    torch_lifter.update_config(LifterConfig(device="cpu", backend="onnxruntime"))
    assert torch_lifter.backend == "onnxruntime" and torch_lifter.num_tracks == 3
    with pytest.raises(ValueError, match="backend"):
        torch_lifter.update_config(LifterConfig(device="cpu", backend="tensorrt"))
    assert torch_lifter.backend == "onnxruntime" and torch_lifter.config.backend == "onnxruntime"


def test_batch_parallel_sessions_give_the_single_session_result(tmp_path):
    lifter = Lifter.from_weights(None, LifterConfig(device="cpu", backend="torch"))
    path = cached_onnx(lifter.model, tmp_path)  # the default model streams: its step
    single, split = OnnxStep(path), OnnxStep(path, batch_parallel=2)
    assert len(split.sessions) == 2
    for B in (1, 2, 5):
        rng = np.random.default_rng(B)
        x = rng.normal(size=(B, 17, 3)).astype(np.float32)
        past, ages = (a.numpy() for a in empty_cache(lifter.model, B))
        past[:] = rng.normal(size=past.shape)
        ages[:, :10] = np.arange(1, 11)  # ten frames cached
        for a, b in zip(split(x, past, ages, 2), single(x, past, ages, 2)):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_onnx_cache_falls_back_to_a_temp_dir_when_the_cache_home_is_unusable(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert onnx_cache_dir().parent == tmp_path / "tmp"


# ---- the node under a flood -----------------------------------------------------------------------
def test_node_lifts_the_newest_input_when_flooded_and_counts_the_rest(ros_context):
    from conftest import spin_until
    from test_lift_node import Harness, camera_info

    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2)
    try:
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        uv = project(synthetic_person(3.0), K)
        people = 10  # a forward for 10 people takes far longer than publishing one message
        sent = len(uv)
        stamps = [1_700_000_000_000_000_000 + i * 33_333_333 for i in range(sent)]
        for i in range(sent):
            h.pub_kp.publish(keypoint_msg(stamps[i], [uv[i] + [40.0 * p - 200, 0] for p in range(people)],
                                          [str(p) for p in range(people)]))
            h.executor.spin_once(timeout_sec=0)  # the node takes what has arrived into its mailbox

        def stamp(out):
            return out.header.stamp.sec * 1_000_000_000 + out.header.stamp.nanosec
        assert spin_until(h.executor, lambda: h.out and stamp(h.out[-1]) == stamps[-1], 30.0), \
            "the newest input was never lifted"
        got = [stamp(o) for o in h.out]
        assert got == sorted(set(got)), "outputs went back in time: a stale input was lifted after a newer one"
        assert all(len(o.skeletons) == people for o in h.out)

        def settled():
            d = h.diagnostics()
            return d if int(d["outputs"]) + int(d["dropped_behind"]) == int(d["inputs"]) else None
        diag = None
        for _ in range(10):
            diag = settled()
            if diag:
                break
        assert diag, f"outputs + dropped != inputs: {h.diag[-1].status[0].values}"
        assert int(diag["outputs"]) == len(h.out)
        assert int(diag["dropped_behind"]) > 0 and len(h.out) < int(diag["inputs"]) <= sent
        assert diag["rejected_total"] == "0"
    finally:
        h.close()


def test_backend_parameter_switches_the_engine_at_run_time(ros_context):
    from test_lift_node import Harness, camera_info

    h = Harness(ros_context, input_reliability="reliable")
    try:
        h.pub_info.publish(camera_info())
        uv = project(synthetic_person(0.2), K)
        assert h.node.lifter.backend == "onnxruntime"  # the default: the faster on CPU
        h.send(keypoint_msg(1_000_000_000, [uv[0]], ["1"]), expect_outputs=1)
        result = h.node.set_parameters([Parameter("backend", value="tensorrt")])[0]
        assert not result.successful and "backend" in result.reason
        assert h.node.set_parameters([Parameter("backend", value="torch")])[0].successful
        assert h.node.lifter.backend == "torch" and h.node.lifter.num_tracks == 1  # tracks survive the switch
        h.send(keypoint_msg(1_033_333_333, [uv[1]], ["1"]), expect_outputs=2)
        assert h.out[-1].skeletons[0].id == "1"
    finally:
        h.close()
