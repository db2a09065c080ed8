"""Faults a long-running node meets: bad weights at start-up, a publisher that stops and
restarts, a bag that loops, CameraInfo late or never, parameter updates at run time. The node
is the real one, over real DDS (or the real executable, for start-up)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from safetensors.torch import load_file, save_file

from conftest import REPO, next_domain_id, spin_until
from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.geometry.camera import project
from posemoe_ros.geometry.stature import bone_lengths, standing_height
from posemoe_ros.models.weights import model_metadata
from posemoe_ros.pipeline.lifter import Lifter, default_weights_path
from test_lift_node import FPS, K, Harness, camera_info, keypoint_msg

NS = 1_000_000_000
START_LIMIT_S = 60  # generous for a loaded CI machine; the measured time goes to docs/reliability.md


# ---- start-up with bad weights --------------------------------------------------------------------
def _bad_weights(tmp_path):
    """name -> (path, what the one line must mention)."""
    src = default_weights_path()
    meta, tensors = model_metadata(src), load_file(str(src))
    files = {"missing": (tmp_path / "absent.safetensors", "not found")}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    files["truncated"] = (truncated, "truncated")
    shapes = dict(tensors)
    name = sorted(shapes)[0]
    shapes[name] = torch.zeros(3, 3)
    save_file(shapes, str(tmp_path / "shapes.safetensors"), metadata=meta)
    files["wrong_shapes"] = (tmp_path / "shapes.safetensors", "shape mismatch")
    preset = dict(meta, config=json.dumps({**json.loads(meta["config"]), "preset": "xxl"}))
    save_file(tensors, str(tmp_path / "preset.safetensors"), metadata=preset)
    files["unknown_preset"] = (tmp_path / "preset.safetensors", "unknown preset 'xxl'")
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata=dict(meta, model="posemoe_xl"))
    files["unknown_model"] = (tmp_path / "model.safetensors", "unknown model 'posemoe_xl'")
    return files


class _Payload:
    """Unpickling this writes the marker file: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _start(weights, domain: int, *params: str) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONPATH=str(REPO), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    overrides = [arg for p in (f"weights:={weights}",) * bool(weights) + params for arg in ("-p", p)]
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "lift_node"), "--ros-args", *overrides],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_bad_start_up_parameters_stop_the_node_with_one_line_naming_them():
    bad = {"lookahead:=1000": "lookahead", "lookahead:=abc": "lookahead", "input_reliability:=foo": "input_reliability",
           "device:=tpu": "device", "body_height:=0.1": "body_height"}
    procs = {p: _start("", next_domain_id(), p) for p in bad}
    for param, proc in procs.items():
        out, _ = proc.communicate(timeout=START_LIMIT_S)
        lines = [line for line in out.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in out, (param, out)
        assert "cannot start" in lines[0] and bad[param] in lines[0], (param, lines[0])


def test_bad_weights_stop_the_node_with_one_clear_line_and_pickles_are_never_loaded(tmp_path):
    files = _bad_weights(tmp_path)
    marker = tmp_path / "unpickled"
    for name in ("weights.pt", "weights.safetensors"):  # the extension does not matter: the content does
        torch.save({"model": _Payload(marker)}, tmp_path / name)
        files[f"pickle {name}"] = (tmp_path / name, "pickle")
    with open(tmp_path / "weights.pkl", "wb") as f:  # a plain pickle, not torch's zip
        import pickle
        pickle.dump(_Payload(marker), f)
    files["pickle .pkl"] = (tmp_path / "weights.pkl", "pickle")

    started = time.monotonic()
    procs = {name: _start(path, next_domain_id()) for name, (path, _) in files.items()}  # all at once
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=START_LIMIT_S)
        lines = [line for line in out.splitlines() if line.strip()]
        assert proc.returncode != 0, (name, out)
        assert "Traceback" not in out and len(lines) == 1, (name, out)
        assert "weights" in lines[0] and files[name][1] in lines[0], (name, lines[0])
        assert str(files[name][0]) in lines[0], (name, lines[0])
    elapsed = time.monotonic() - started
    assert not marker.exists(), "a weights file was unpickled"
    print(f"\n{len(procs)} bad weights files refused, all processes done in {elapsed:.1f} s (run at once)")


# ---- a publisher that stops and restarts; a bag that loops ---------------------------------------
LOOKAHEAD = 2


def _two_people(frames: int, seed: int):
    """Pixel keypoints (F,2,17,2) of two people, ids '1' and '2'."""
    people = []
    for n, kind in enumerate(("turn", "wave")):
        w = generate_motion(kind, seconds=frames / FPS, fps=FPS, seed=seed + n)
        cam = np.stack([-w[..., 0] + (-0.8 + 1.6 * n), -(w[..., 1] - 1.2), w[..., 2] + 4.0 - w[:1, :1, 2]], -1)
        people.append(project(cam, K))
    return np.stack(people, 1)


def _stamp(out) -> int:
    return out.header.stamp.sec * NS + out.header.stamp.nanosec


def _positions(skeleton) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in skeleton.positions])


def _send_segment(h: Harness, stamps, uv, ids=("1", "2")):
    """Send a segment one message at a time (each taken by the lifting thread before the next, so
    the newest-input mailbox replaces none); returns the outputs it produced."""
    first = len(h.out)
    for stamp, people in zip(stamps, uv):
        h.pub_kp.publish(keypoint_msg(stamp, list(people), list(ids)))
        assert spin_until(h.executor, lambda: h.node._last_lifted_ns == stamp, 10.0)
    spin_until(h.executor, lambda: False, 0.3)  # the last lift's output
    assert spin_until(h.executor, lambda: h.node._inbox is not None and len(h.node._inbox) == 0, 5.0)
    return h.out[first:]


def _fresh(config, stamps, uv, ids=("1", "2")):
    """What a fresh Lifter, fed only this segment, publishes: [(stamp, {id: positions})]."""
    lifter = Lifter.from_weights(None, config)
    frames = []
    for stamp, people in zip(stamps, uv):
        f = lifter.process(stamp, "h36m17", list(ids), people, np.full(people.shape[:2], 0.9), K, np.zeros(5))
        if f.people is not None:
            frames.append((f.stamp_ns, {p.id: p.positions for p in f.people}))
    return frames


def _assert_same(outputs, expected, segment: str):
    assert [_stamp(o) for o in outputs] == [s for s, _ in expected], segment
    for out, (_, people) in zip(outputs, expected):
        assert {s.id for s in out.skeletons} == set(people), segment
        for s in out.skeletons:
            np.testing.assert_allclose(_positions(s), people[s.id], atol=1e-5, err_msg=segment)


@pytest.fixture
def harness(ros_context):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, warn_period=60.0, device="cpu",
                lookahead=LOOKAHEAD)
    h.pub_info.publish(camera_info())
    assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
    yield h
    h.close()


def test_restarted_publisher_and_looping_bag_reset_tracks_and_never_mix_old_and_new_time(harness):
    h = harness
    t0 = h.node.get_clock().now().nanoseconds - 600 * NS
    n = 36
    uv = _two_people(3 * n, seed=20)
    a = [t0 + i * NS // FPS for i in range(n)]
    b1 = [a[-1] + int(0.8 * NS) + i * NS // FPS for i in range(n)]  # a pause over max_gap: windows restart
    b2 = [b1[-1] + 3 * NS + i * NS // FPS for i in range(n)]  # over track_timeout: tracks expired
    config = h.node.lifter.config

    out_a = _send_segment(h, a, uv[:n])
    _assert_same(out_a, _fresh(config, a, uv[:n]), "first run")
    out_b1 = _send_segment(h, b1, uv[n:2 * n])
    _assert_same(out_b1, _fresh(config, b1, uv[n:2 * n]), "after a 0.8 s pause")
    # The publisher goes away and a new one comes (a restarted detector node)
    h.peer.destroy_publisher(h.pub_kp)
    spin_until(h.executor, lambda: False, 0.5)
    h.pub_kp = h.peer.create_publisher(type(keypoint_msg(0, [], [])), "keypoints_2d", 100)
    assert spin_until(h.executor, lambda: h.pub_kp.get_subscription_count() > 0, 10.0)
    out_b2 = _send_segment(h, b2, uv[2 * n:])
    _assert_same(out_b2, _fresh(config, b2, uv[2 * n:]), "after the publisher restarted 3 s later")
    # The bag loops: the first run again, stamps jump back over 5 s
    out_c = _send_segment(h, a, uv[:n])
    _assert_same(out_c, _fresh(config, a, uv[:n]), "the looped bag")
    assert [_stamp(o) for o in out_c] == [_stamp(o) for o in out_a]

    for segment, outputs in (("a", out_a), ("b1", out_b1), ("b2", out_b2), ("c", out_c)):
        stamps = [_stamp(o) for o in outputs]
        assert stamps == sorted(set(stamps)), f"segment {segment} went back in time"
        assert len(outputs) == n - LOOKAHEAD and all(o.lookahead == LOOKAHEAD for o in outputs)
    diag = h.diagnostics()
    assert diag["time_resets"] == "1" and diag["rejected_total"] == "0"


# ---- CameraInfo late or never -----------------------------------------------------------------------
def test_camera_info_late_or_never_waits_warns_and_then_lifts_from_its_arrival(ros_context):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, warn_period=60.0, device="cpu")
    try:
        t0 = h.node.get_clock().now().nanoseconds - 60 * NS
        uv = _two_people(40, seed=30)
        stamps = [t0 + i * NS // FPS for i in range(40)]
        for i in range(10):  # none yet: each message waits, counted, one warning
            h.pub_kp.publish(keypoint_msg(stamps[i], list(uv[i]), ["1", "2"]))
            assert spin_until(h.executor, lambda: h.node.stats.inputs == i + 1, 5.0)
        spin_until(h.executor, lambda: False, 0.3)
        assert h.out == []
        h.diag.clear()
        assert spin_until(h.executor, lambda: h.diag, 5.0)
        status = h.diag[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == DiagnosticStatus.WARN and status.message == "waiting for camera_info"
        assert values["rejected_no_camera_info"] == "10"
        waits = [log for log in h.logs if "no_camera_info" in log.msg]
        assert len(waits) == 1

        h.pub_info.publish(camera_info())  # late: lifting starts with the next message
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        for i in range(10, 40):
            h.send(keypoint_msg(stamps[i], list(uv[i]), ["1", "2"]), expect_outputs=i - 9)
        _assert_same(h.out, _fresh(h.node.lifter.config, stamps[10:], uv[10:]), "after a late CameraInfo")
        h.diag.clear()
        assert spin_until(h.executor, lambda: h.diag and h.diag[-1].status[0].level == DiagnosticStatus.OK, 5.0)
    finally:
        h.close()


def test_fallback_intrinsics_lift_without_camera_info(ros_context):
    h = Harness(ros_context, input_reliability="reliable", device="cpu", fx=600.0)  # cx, cy: the image centre
    try:
        t0 = h.node.get_clock().now().nanoseconds - 60 * NS
        uv = _two_people(5, seed=31)
        stamps = [t0 + i * NS // FPS for i in range(5)]
        for i in range(5):
            h.send(keypoint_msg(stamps[i], list(uv[i]), ["1", "2"]), expect_outputs=i + 1)
        _assert_same(h.out, _fresh(h.node.lifter.config, stamps, uv), "fallback intrinsics")  # K's centre is 319.5
    finally:
        h.close()


# ---- parameters at run time ------------------------------------------------------------------------
def _set(h: Harness, client, **values):
    """Set parameters through the node's parameter service, as `ros2 param set` does."""
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    assert spin_until(h.executor, future.done, 10.0)
    results = future.result().results
    return results[0] if len(results) == 1 else all(r.successful for r in results)


def test_invalid_parameter_updates_are_refused_with_the_reason_and_valid_ones_apply_at_once(ros_context):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, device="cpu")
    try:
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        client = h.peer.create_client(SetParameters, "/posemoe_lift/set_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        before = h.node.lifter.config
        refused = {
            "lookahead=9 (beyond what it was trained for)": (dict(lookahead=9), "trained for (0 to 8"),
            "lookahead=500": (dict(lookahead=500), "out of range"),
            "lookahead='3'": (dict(lookahead="3"), "Wrong parameter type"),
            "min_confidence=1.5": (dict(min_confidence=1.5), "out of range"),
            "min_confidence=nan": (dict(min_confidence=math.nan), "out of range"),
            "device=tpu": (dict(device="tpu"), "device must be one of"),
            "backend=tensorrt": (dict(backend="tensorrt"), "backend must be one of"),
            "use_depth (read-only)": (dict(use_depth=True), "read-only"),
            "max_stamp_ahead=-1": (dict(max_stamp_ahead=-1.0), "out of range"),
            "body_height=0.1": (dict(body_height=0.1), "no person's stature"),
            "body_height=3": (dict(body_height=3.0), "no person's stature"),  # no descriptor range: one rule (stature.py)
        }
        if not torch.cuda.is_available():
            refused["device=cuda without CUDA"] = (dict(device="cuda"), "CUDA is not available")
        for label, (values, reason) in refused.items():
            result = _set(h, client, **values)
            assert not result.successful and reason in result.reason, (label, result.reason)
        assert h.node.lifter.config == before

        t0 = h.node.get_clock().now().nanoseconds - 60 * NS
        uv = _two_people(60, seed=40)
        stamps = [t0 + i * NS // FPS for i in range(60)]
        conf = np.full((2, 17), 0.9)
        conf[:, [13, 16]] = 0.4  # wrists: confident at min_confidence 0.3, missing at 0.5

        def lift(i):
            msg = keypoint_msg(stamps[i], list(uv[i]), ["1", "2"])
            for s, c in zip(msg.skeletons, conf):
                for kp, value in zip(s.keypoints, c):
                    kp.confidence = float(value)
            n = len(h.out)
            h.send(msg, expect_outputs=n + 1)
            return h.out[-1]

        out = [lift(i) for i in range(10)]
        assert all(_stamp(o) == stamps[i] and o.lookahead == 0 for i, o in enumerate(out))
        assert out[-1].skeletons[0].confidence[13] == pytest.approx(0.4)

        assert _set(h, client, min_confidence=0.5).successful  # takes effect with the next message
        out = lift(10)
        assert out.skeletons[0].confidence[13] == 0.0 and out.skeletons[0].confidence[0] == pytest.approx(0.9)
        assert _set(h, client, lookahead=3).successful
        out = lift(11)
        assert out.lookahead == 3 and _stamp(out) == stamps[11 - 3]
        assert _set(h, client, device="cpu", lookahead=0)
        out = lift(12)
        assert out.lookahead == 0 and _stamp(out) == stamps[12]
        assert h.diagnostics()["device"].startswith("cpu")
        assert h.node.lifter.config.min_confidence == 0.5 and h.node.lifter.config.lookahead == 0
        assert _set(h, client, body_height=1.9).successful  # every skeleton from now on is 1.9 m tall
        joints = np.array([[p.x, p.y, p.z] for p in lift(13).skeletons[0].positions])
        assert standing_height(bone_lengths(joints)) == pytest.approx(1.9, abs=1e-4)
    finally:
        h.close()
