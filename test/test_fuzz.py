"""Fuzz: over 10,000 seeded random and malformed messages over real DDS into a real LiftNode.

Every message is built here with the rejection reason and the counts the node must report for it
(written down independently of the node's code, from the rules in docs/reliability.md). The
test then checks that nothing escaped a callback (the executor re-raises callback exceptions
from spin_once; the lifting thread's last line of defence counts `internal_error`, which must
stay 0), that /diagnostics counts every reason exactly as sent, that warnings are throttled to
one per reason per warn_period, and that each valid message in between is lifted exactly as a
fresh Lifter fed the same accepted inputs lifts it (and close to the truth for the probe person).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from rcl_interfaces.msg import Log
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from conftest import spin_until
from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.geometry.camera import project
from posemoe_ros.metrics import mpjpe
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray
from posemoe_ros.pipeline.layouts import LAYOUTS
from posemoe_ros.pipeline.lifter import Lifter, MAX_VIEW_TAN
from test_lift_node import FRAME, Harness

SEED = 8
WARN_PERIOD = 2.0  # s; the throttle under test
W, H = 640, 480
K = np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]])
FPS = 30
PROBES = 345  # bursts of malformed messages, each followed by one valid probe message
MPJPE_BOUND_M = 0.15  # as test_lift_node: the probe person is a clean synthetic walker
NS = 1_000_000_000
INT32_MAX = 2**31 - 1

# Message classes of one burst and their weights. `random` mixes every fault at random.
REJECTED = {"unknown_layout": 4, "bad_image_size": 4, "too_many_people": 3, "wrong_count_all": 5,
            "invalid_stamp": 6, "random": 4}
ACCEPTED = {"nonfinite": 0.5, "out_of_view": 0.5, "empty": 0.2, "duplicate_id": 0.3, "sparse": 0.25,
            "wrong_count_some": 0.3, "other_layout": 0.25, "backwards": 0.03}
BURST = 28  # messages per burst on average


@dataclass
class Case:
    kind: str
    msg: Skeleton2DArray
    reject: str | None = None  # the whole message is rejected for this reason
    counts: Counter = field(default_factory=Counter)  # reason -> items the node must count
    ref: tuple | None = None  # (stamp_ns, layout, ids, uv, conf) the lifter must see, when accepted


def _msg(stamp, layout: str, people, width=W, height=H) -> Skeleton2DArray:
    """people: [(id, (n,3) float array of x, y, confidence)]; stamp: ns or (sec, nanosec)."""
    msg = Skeleton2DArray(width=width, height=height, layout=layout)
    msg.header.frame_id = FRAME
    sec, nanosec = divmod(stamp, NS) if isinstance(stamp, int) else stamp
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.skeletons = [Skeleton2D(id=i, keypoints=kps if isinstance(kps, list) else
                                [Keypoint2D(x=float(x), y=float(y), confidence=float(c)) for x, y, c in kps])
                     for i, kps in people]
    return msg


def _keypoint_counts(people) -> Counter:
    """The per-keypoint reasons of the documented rules: non-finite x, y or confidence; finite but
    more than MAX_VIEW_TAN off the optical axis (in float32, as the message carries them)."""
    counts = Counter()
    for _, kps in people:
        v = np.asarray(kps, np.float32).astype(np.float64).reshape(-1, 3)
        finite = np.isfinite(v).all(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            far = np.abs((v[:, :2] - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]) > MAX_VIEW_TAN
        counts["nonfinite_keypoints"] += int((~finite).sum())
        counts["out_of_view_keypoints"] += int((finite & far.any(-1)).sum())
    return +counts


class Fuzzer:
    """Seeded generator of the fuzz cases, on a timeline of probe frames at FPS."""

    def __init__(self, seed: int, t0_ns: int):
        self.rng = np.random.default_rng(seed)
        self.t0 = t0_ns
        self.last_accepted = t0_ns - NS  # stamp of the newest message the lifter saw
        self.now_ns = t0_ns
        # The probe person "v": a clean walker turning on the spot, right of the image centre.
        world = generate_motion("turn", seconds=PROBES / FPS + 1, fps=FPS, seed=3)
        self.v_truth = np.stack([-world[..., 0] + 0.9, -(world[..., 1] - 1.2),
                                 world[..., 2] + 4.0 - world[:1, :1, 2]], -1)
        self.v_uv = project(self.v_truth, K)
        # Other people: frames of several motions left of the centre, 3-6 m away.
        pool = []
        for n, kind in enumerate(("walk", "wave", "reach", "sit")):
            w = generate_motion(kind, seconds=3, fps=FPS, seed=10 + n)
            cam = np.stack([-w[..., 0] - 1.0 - 0.3 * n, -(w[..., 1] - 1.2), w[..., 2] + 3.0 + n - w[:1, :1, 2]], -1)
            pool.append(project(cam, K))
        self.pool = np.concatenate(pool)  # (N,17,2)
        # Big lists reuse message objects (serialised the same; building 17,000 of them is slow).
        self.big = [Keypoint2D(x=float(x), y=float(y), confidence=0.9) for x, y, _ in self.random_keypoints(1000)]

    # ---- people --------------------------------------------------------------------------------
    def person(self, conf=None) -> np.ndarray:
        """A plausible h36m17 person (17,3), left of the probe person."""
        uv = self.pool[self.rng.integers(len(self.pool))] + self.rng.normal(0, 1.0, (17, 2))
        c = self.rng.uniform(0.5, 1.0, 17) if conf is None else np.full(17, conf)
        return np.concatenate([uv, c[:, None]], -1)

    def random_keypoints(self, n: int) -> np.ndarray:
        """n in-image keypoints (n,3), confident (any layout)."""
        return np.stack([self.rng.uniform(0, W, n), self.rng.uniform(0, H, n), self.rng.uniform(0.5, 1, n)], -1)

    def ids(self, n: int, prefix: str) -> list[str]:
        return [f"{prefix}{self.rng.integers(40)}_{k}" for k in range(n)]

    def junk(self, kps: np.ndarray, how: str, n: int) -> np.ndarray:
        """Put `how` (nonfinite | far) values into n random keypoints of kps (k,3)."""
        kps = kps.copy()
        for k in self.rng.choice(len(kps), n, replace=False):
            if how == "nonfinite":
                kps[k, self.rng.integers(3)] = self.rng.choice([np.nan, np.inf, -np.inf])
            else:
                kps[k, self.rng.integers(2)] = self.rng.choice([-1, 1]) * 10 ** self.rng.uniform(5, 38.5)
        return kps

    # ---- stamps --------------------------------------------------------------------------------
    def invalid_stamp(self):
        r = self.rng.integers(4)
        if r == 0:
            return (0, 0)
        if r == 1:
            return (-int(self.rng.integers(1, 2**31)), int(self.rng.integers(NS)))
        if r == 2:
            return (int(self.now_ns // NS), int(self.rng.integers(NS, 2**32)))
        # far future (max_stamp_ahead is 60 s); a fixed range keeps the draws, so the run, independent of the clock
        return (min(INT32_MAX, int(self.now_ns // NS + 3600 + self.rng.integers(2**28))), 0)

    # ---- cases ---------------------------------------------------------------------------------
    def accepted(self, kind, stamp, layout, people, counts=None) -> Case:
        msg = _msg(stamp, layout, people)
        self.last_accepted = stamp
        kept = [(i, np.asarray(k, np.float32).astype(np.float64)) for i, k in people if len(k) == LAYOUTS[layout]]
        ids = [i for i, _ in kept]
        values = np.stack([k for _, k in kept]) if kept else np.zeros((0, LAYOUTS[layout], 3))
        expected = _keypoint_counts(kept) + (counts or Counter())  # people left out are never screened
        return Case(kind, msg, None, expected, (stamp, layout, ids, values[..., :2], values[..., 2]))

    def case(self, kind: str, stamp: int) -> Case:
        rng = self.rng
        if kind == "unknown_layout":
            layout = rng.choice(["", "COCO17", "coco_17", "h36m", "openpose_hands", "x" * 10_000, "körper25"])
            return Case(kind, _msg(stamp, str(layout), [("u", self.person())]), "unknown_layout",
                        Counter(unknown_layout=1))
        if kind == "bad_image_size":
            w, h = [(0, H), (W, 0), (0, 0), (2**32 - 1, H), (W, 2**32 - 640), (100_001, H)][rng.integers(6)]
            return Case(kind, _msg(stamp, "h36m17", [("s", self.person())], w, h), "bad_image_size",
                        Counter(bad_image_size=1))
        if kind == "too_many_people":
            n = 1000 if rng.random() < 0.015 else int(rng.integers(65, 200))
            people = [(str(k), self.big[:17] if n == 1000 else []) for k in range(n)]
            return Case(kind, _msg(stamp, "h36m17", people), "too_many_people", Counter(too_many_people=1))
        if kind == "wrong_count_all":
            layout = str(rng.choice(list(LAYOUTS)))
            n = int(rng.integers(1, 4))
            counts = [int(rng.choice([0, 1, LAYOUTS[layout] - 1, LAYOUTS[layout] + 1, 1000], p=[.3, .2, .2, .25, .05]))
                      for _ in range(n)]
            people = [(f"w{k}", self.big if c == 1000 else self.random_keypoints(c)) for k, c in enumerate(counts)]
            return Case(kind, _msg(stamp, layout, people), "wrong_keypoint_count", Counter(wrong_keypoint_count=n))
        if kind == "invalid_stamp":
            return Case(kind, _msg(self.invalid_stamp(), "h36m17", [("t", self.person())]), "invalid_stamp",
                        Counter(invalid_stamp=1))
        if kind == "random":
            return self.random_case(stamp)
        # accepted classes
        if kind == "nonfinite":
            people = [(i, self.junk(self.person(), "nonfinite", int(rng.integers(1, 6))))
                      for i in self.ids(int(rng.integers(1, 4)), "n")]
            return self.accepted(kind, stamp, "h36m17", people)
        if kind == "out_of_view":
            people = [(i, self.junk(self.person(), "far", int(rng.integers(1, 6))))
                      for i in self.ids(int(rng.integers(1, 4)), "o")]
            for _, kps in people:  # negative but in view (left of or above the image): not counted
                k = rng.integers(17)
                if abs(kps[k, 0]) < 1e4 and abs(kps[k, 1]) < 1e4:
                    kps[k, rng.integers(2)] = -rng.uniform(1, 2000)
            return self.accepted(kind, stamp, "h36m17", people)
        if kind == "empty":
            return self.accepted(kind, stamp, "h36m17", [])
        if kind == "duplicate_id":
            ids = list(rng.choice(["d1", "d2"], int(rng.integers(3, 6))))
            people = [(str(i), self.person()) for i in ids]
            duplicates = len(ids) - len(set(ids))
            return self.accepted(kind, stamp, "h36m17", people, Counter(duplicate_id=duplicates))
        if kind == "sparse":  # three confident joints cannot be lifted
            kps = self.person()
            kps[rng.choice(17, 14, replace=False), 2] = 0.0
            return self.accepted(kind, stamp, "h36m17", [("p", kps)], Counter(too_few_keypoints=1))
        if kind == "wrong_count_some":
            good = [(i, self.person()) for i in self.ids(int(rng.integers(1, 3)), "g")]
            bad = [(f"b{k}", self.random_keypoints(int(rng.choice([0, 5, 16, 18, 40]))))
                   for k in range(rng.integers(1, 3))]
            people = good + bad
            rng.shuffle(people)
            return self.accepted(kind, stamp, "h36m17", people, Counter(wrong_keypoint_count=len(bad)))
        if kind == "other_layout":
            layout = str(rng.choice(["coco17", "body25", "mediapipe33", "coco18"]))
            people = [(i, self.random_keypoints(LAYOUTS[layout])) for i in self.ids(int(rng.integers(1, 3)), "l")]
            return self.accepted(kind, stamp, layout, people)
        if kind == "backwards":  # a looping bag: valid, and every track restarts
            back = self.last_accepted - int(rng.uniform(0.05, 50) * NS)
            return self.accepted(kind, back, "h36m17", [("bk", self.person())], Counter(time_resets=1))
        raise ValueError(kind)

    def random_case(self, stamp: int) -> Case:
        """Every fault at random; the expected reason is the first failing check in the node's order
        (stamp, layout, image size, people count, keypoint counts)."""
        rng = self.rng
        bad_stamp = rng.random() < 0.15
        layout = str(rng.choice(list(LAYOUTS))) if rng.random() < 0.8 else str(rng.choice(["", "coco", "h36m18"]))
        w, h = (W, H) if rng.random() < 0.85 else [(0, H), (W, 0), (2**32 - 1, 2**32 - 1)][rng.integers(3)]
        n = int(rng.integers(0, 5)) if rng.random() < 0.9 else int(rng.integers(65, 120))
        expected = LAYOUTS.get(layout, 17)
        people = []
        for k in range(n):
            count = expected if rng.random() < 0.75 else int(rng.integers(0, 40))
            kps = self.random_keypoints(count)
            if count and rng.random() < 0.5:
                kps = self.junk(kps, str(rng.choice(["nonfinite", "far"])), int(rng.integers(1, min(count, 5) + 1)))
            people.append((f"r{k}_{rng.integers(1000)}", kps))
        msg_stamp = self.invalid_stamp() if bad_stamp else stamp
        wrong = sum(len(kps) != expected for _, kps in people)
        for reason, failed in (("invalid_stamp", bad_stamp), ("unknown_layout", layout not in LAYOUTS),
                               ("bad_image_size", (w, h) != (W, H)), ("too_many_people", n > 64),
                               ("wrong_keypoint_count", n > 0 and wrong == n)):
            if failed:
                return Case("random", _msg(msg_stamp, layout, people, w, h), reason,
                            Counter({reason: wrong if reason == "wrong_keypoint_count" else 1}))
        case = self.accepted("random", stamp, layout, people, Counter(wrong_keypoint_count=wrong))
        case.counts = +case.counts
        return case

    def bursts(self):
        """Yield (cases of one burst, the probe case after it) PROBES times."""
        kinds = list(REJECTED) + list(ACCEPTED)
        weights = np.array(list(REJECTED.values()) + list(ACCEPTED.values()), float)
        for i in range(PROBES):
            probe_ns = self.t0 + i * NS // FPS
            n = int(self.rng.integers(BURST // 2, BURST * 3 // 2))
            burst = []
            for j, kind in enumerate(self.rng.choice(kinds, n, p=weights / weights.sum())):
                stamp = probe_ns - NS // FPS + (j + 1) * (NS // FPS) // (n + 2)
                burst.append(self.case(str(kind), stamp))
            kps = np.concatenate([self.v_uv[i], np.full((17, 1), 0.95)], -1)
            yield burst, self.accepted("probe", probe_ns, "h36m17", [("v", kps)])

    def camera_infos(self, n: int):
        """(CameraInfo, is_bad) pairs: all-zero K, non-finite K, fx <= 0, a bad last row, distortion
        lengths that fit no model, unsupported models; one in ten is the good calibration."""
        for _ in range(n):
            info = good_camera_info()
            r = self.rng.integers(7)
            if self.rng.random() < 0.1:
                yield info, False
                continue
            if r == 0:
                info.k = [0.0] * 9
            elif r == 1:
                k = list(info.k)
                k[self.rng.integers(9)] = float(self.rng.choice([np.nan, np.inf]))
                info.k = k
            elif r == 2:
                k = list(info.k)
                k[0] = -600.0
                info.k = k
            elif r == 3:
                k = list(info.k)
                k[8] = 0.0
                info.k = k
            elif r == 4:
                info.d = [0.0] * int(self.rng.choice([0, 1, 4, 6, 8, 14, 100]))
            elif r == 5:
                info.distortion_model, info.d = str(self.rng.choice(["equidistant", "fisheye", "x"])), [0.0] * 4
            else:
                info.distortion_model, info.d = "rational_polynomial", [0.0] * 5
            yield info, True


def good_camera_info(k=K, width=W, height=H) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id = FRAME
    info.k = np.asarray(k, float).flatten().tolist()
    return info


class FuzzHarness(Harness):
    """test_lift_node's harness plus depth and image publishers and the overlay output."""

    def __init__(self, context, **params):
        super().__init__(context, **params)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_depth = self.peer.create_publisher(Image, "depth", reliable)
        self.pub_image = self.peer.create_publisher(Image, "image", reliable)
        self.overlays = []
        self.peer.create_subscription(Image, "overlay", self.overlays.append, qos_profile_sensor_data)
        for sub in list(self.peer.subscriptions):  # TF and markers are tested elsewhere; decoding them is slow
            if sub.topic_name in ("/tf", "/skeleton_markers"):
                self.peer.destroy_subscription(sub)
        if params.get("use_depth"):
            assert spin_until(self.executor, lambda: self.pub_depth.get_subscription_count() > 0
                              and self.pub_image.get_subscription_count() > 0)

    def wait_inputs(self, n: int, timeout=10.0):
        assert spin_until(self.executor, lambda: self.node.stats.inputs >= n, timeout), \
            f"node saw {self.node.stats.inputs} of {n} keypoint messages"

    def wait_outputs(self, n: int, timeout=10.0):
        assert spin_until(self.executor, lambda: len(self.out) >= n, timeout), \
            f"{len(self.out)} outputs, expected {n}"

    def final_diagnostics(self, expect_inputs: int):
        for _ in range(20):
            d = self.diagnostics()
            if int(d["inputs"]) >= expect_inputs:
                return d
        raise AssertionError(f"diagnostics never reached {expect_inputs} inputs")


def _stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def _positions(skeleton) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in skeleton.positions])


def _rejected_counts(diag: dict) -> Counter:
    """The node's rejected_<reason> diagnostics as counts by reason."""
    return Counter({k[len("rejected_"):]: int(v) for k, v in diag.items()
                    if k.startswith("rejected_") and k != "rejected_total"})


def _check_against_a_fresh_lifter(h, accepted, on_output=None) -> Counter:
    """Every accepted message was lifted exactly as a fresh Lifter fed the accepted inputs lifts it
    (same stamp, ids and positions to 1e-5 m, all finite); returns that lifter's warning counts.
    on_output(case, out, reference) sees each pair after the checks."""
    reference = Lifter.from_weights(None, h.node.lifter.config)
    ref_counts = Counter()
    for case, out in zip(accepted, h.out):
        stamp, layout, ids, uv, conf = case.ref
        frame = reference.process(stamp, layout, ids, uv, conf, K, np.zeros(5))
        ref_counts += frame.warnings
        assert _stamp(out) == frame.stamp_ns == stamp
        assert [s.id for s in out.skeletons] == [p.id for p in frame.people], case.kind
        for s, p in zip(out.skeletons, frame.people):
            np.testing.assert_allclose(_positions(s), p.positions, atol=1e-5, err_msg=case.kind)
            assert np.isfinite(_positions(s)).all()
        if on_output is not None:
            on_output(case, out, reference)
    return ref_counts


def _check_warnings(logs, started: float, reasons):
    """At least one warning per reason seen, at most one per warn_period; no ERROR or FATAL."""
    assert not [log.msg for log in logs if log.level >= Log.ERROR], "error logged"
    elapsed = time.monotonic() - started
    warned = Counter(log.msg.rsplit("[", 1)[-1].split(";")[0] for log in logs if log.level == Log.WARN)
    for reason in reasons:
        assert 1 <= warned[reason] <= math.ceil(elapsed / WARN_PERIOD) + 1, (reason, warned[reason], elapsed)
    return warned


@pytest.fixture
def node_a(ros_context):
    h = FuzzHarness(ros_context, input_reliability="reliable", warn_period=WARN_PERIOD, diagnostics_period=0.5,
                    device="cpu")
    yield h
    h.close()


def test_fuzzed_keypoints_and_camera_info_are_counted_by_reason_and_valid_ones_lift_exactly(node_a):
    h = node_a
    started = time.monotonic()
    now_ns = h.node.get_clock().now().nanoseconds
    fuzz = Fuzzer(SEED, t0_ns=now_ns - 1000 * NS)  # a recording from 1000 s ago; the clock check stays out
    fuzz.now_ns = now_ns
    h.pub_info.publish(good_camera_info())
    assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)

    expected, sent_by_kind, accepted = Counter(), Counter(), []
    infos = list(fuzz.camera_infos(600))
    expected["bad_camera_info"] = sum(bad for _, bad in infos)
    sent = pending = 0
    for b, (burst, probe) in enumerate(fuzz.bursts()):
        for case in burst + [probe]:
            sent += 1
            sent_by_kind[case.kind] += 1
            expected += case.counts
            if case.reject is None:  # one at a time through the newest-input mailbox, so none is replaced
                h.wait_inputs(sent - 1)
                h.pub_kp.publish(case.msg)
                accepted.append(case)
                h.wait_outputs(len(accepted))
            else:  # rejected in the subscription callback; a few in flight (the node's queue depth is 5)
                h.pub_kp.publish(case.msg)
                pending += 1
                if pending == 4:
                    h.wait_inputs(sent)
                    pending = 0
        # camera_info faults, interleaved, a few in flight; the last good calibration stays in use
        for end in range(b * len(infos) // PROBES + 1, (b + 1) * len(infos) // PROBES + 1):
            h.pub_info.publish(infos[end - 1][0])
            if end % 4 == 0 or end == (b + 1) * len(infos) // PROBES:
                bad = sum(bad for _, bad in infos[:end])
                assert spin_until(h.executor, lambda: h.node.stats.rejected["bad_camera_info"] >= bad, 10.0)
    h.wait_inputs(sent)
    h.pub_info.publish(good_camera_info())
    assert spin_until(h.executor, lambda: h.node._camera_error is None, 5.0)
    sent_infos = len(infos) + 2
    assert sent + sent_infos >= 10_000, sent + sent_infos

    # Diagnostics over DDS: every reason exactly as sent; nothing internal; nothing dropped.
    diag = h.final_diagnostics(sent)
    assert int(diag["inputs"]) == sent and int(diag["outputs"]) == len(accepted) == len(h.out)
    assert diag["dropped_behind"] == "0" and "rejected_internal_error" not in diag
    got = _rejected_counts(diag)
    got["time_resets"] = int(diag["time_resets"])
    got = +got
    assert h.node._lift_thread.is_alive()

    errors = []

    def probe_error(case, out, reference):
        if case.kind == "probe" and reference.tracks.num_real_frames("v") >= reference.num_frames:
            i = (case.ref[0] - fuzz.t0) * FPS // NS
            pred = _positions(out.skeletons[0])
            errors.append(float(mpjpe(pred - pred[0], fuzz.v_truth[i] - fuzz.v_truth[i, 0])))

    ref_counts = _check_against_a_fresh_lifter(h, accepted, probe_error)
    # A garbage pose may defeat the root solve: that count has no independent rule, the lifter's own.
    expected["root_unsolved"] = ref_counts["root_unsolved"]
    assert got == +expected, f"diagnostics {dict(got)} != sent {dict(+expected)}"
    lifter_reasons = {"nonfinite_keypoints", "out_of_view_keypoints", "too_few_keypoints", "duplicate_id"}
    assert +Counter({r: got[r] for r in lifter_reasons}) == +Counter({r: ref_counts[r] for r in lifter_reasons})
    assert len(errors) > 50 and np.mean(errors) < MPJPE_BOUND_M, (len(errors), np.mean(errors))

    _check_warnings(h.logs, started, [r for r in +expected if r != "time_resets"] + ["time_reset"])
    print(f"\nfuzz: {sent} keypoint + {sent_infos} camera_info messages in {time.monotonic() - started:.0f} s; "
          f"by class {dict(sent_by_kind)}; counted {dict(got)}; probe MPJPE {1000 * np.mean(errors):.0f} mm "
          f"over {len(errors)} probes with full windows")


# ---- images: node with use_depth and publish_overlay, paired by the approximate synchroniser ------
IW, IH = 160, 120
IK = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
FRAMES = 500


def _image(stamp_ns: int, encoding: str, width: int, height: int, step: int | None = None, data=None,
           fill: float = 0.0) -> Image:
    bpp = {"16UC1": 2, "32FC1": 4, "bgr8": 3, "rgb8": 3, "mono8": 1}.get(encoding, 3)
    step = width * bpp if step is None else step
    if data is None:
        if encoding == "32FC1":
            data = np.full((height, width), fill, np.float32).tobytes()
        elif encoding == "16UC1":
            data = np.full((height, width), round(fill * 1000), np.uint16).tobytes()
        else:
            data = bytes(step * height)
    msg = Image(width=width, height=height, encoding=encoding, step=step, is_bigendian=0, data=data)
    msg.header.frame_id = FRAME
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)
    return msg


def _bad_image(rng, stamp_ns: int, depth: bool) -> Image:
    good = "32FC1" if depth else "bgr8"
    r = rng.integers(6)
    if r == 0:  # wrong encoding
        return _image(stamp_ns, str(rng.choice(["rgb8", "16SC1", "", "yuv422"] if depth else
                                               ["yuv422", "bayer_rggb8", "", "64FC4"])), IW, IH)
    if r == 1:  # step below a row
        return _image(stamp_ns, good, IW, IH, step=IW)
    if r == 2:  # data shorter than step x height
        return _image(stamp_ns, good, IW, IH, data=bytes(IW * IH))
    if r == 3:  # data longer
        return _image(stamp_ns, good, IW, IH, data=bytes(IW * IH * 4 + 7))
    if r == 4:  # empty
        return _image(stamp_ns, good, 0, 0, data=b"")
    # not the keypoints' size (depth must be aligned; an overlay image of another size is drawable)
    if depth:
        return _image(stamp_ns, good, IW // 2, IH // 2, fill=4.0)
    return _image(stamp_ns, good, 200_000, 1)  # wider than any camera


def test_fuzzed_depth_and_images_cost_only_themselves(ros_context):
    h = FuzzHarness(ros_context, input_reliability="reliable", warn_period=WARN_PERIOD, diagnostics_period=0.5,
                    device="cpu", use_depth=True, publish_overlay=True)
    try:
        started = time.monotonic()
        rng = np.random.default_rng(SEED + 1)
        h.pub_info.publish(good_camera_info(IK, IW, IH))
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        world = generate_motion("wave", seconds=FRAMES / FPS + 1, fps=FPS, seed=5)
        truth = np.stack([-world[..., 0], -(world[..., 1] - 1.0), world[..., 2] + 4.0 - world[:1, :1, 2]], -1)
        uv = project(truth, IK)
        t0 = h.node.get_clock().now().nanoseconds - 100 * NS
        expected, good_depth, good_image, sent = Counter(), [], [], 0
        for i in range(FRAMES):
            stamp = t0 + i * NS // FPS
            depth_ok, image_ok = rng.random() < 0.6, rng.random() < 0.6
            pelvis_z = float(truth[i, 0, 2])
            depth = (_image(stamp, str(rng.choice(["32FC1", "16UC1"])), IW, IH, fill=pelvis_z - 0.1) if depth_ok
                     else _bad_image(rng, stamp, depth=True))
            image = (_image(stamp, str(rng.choice(["bgr8", "rgb8", "mono8"])), IW, IH) if image_ok
                     else _bad_image(rng, stamp, depth=False))
            kps = np.concatenate([uv[i], np.full((17, 1), 0.95)], -1)
            msg = _msg(stamp, "h36m17", [("w", kps)], IW, IH)
            if rng.random() < 0.05:  # a malformed keypoint message in the pairing path too
                # keypoints, depth and image each count: all three are screened before the synchroniser
                msg.header.stamp.sec, expected["invalid_stamp"] = -1, expected["invalid_stamp"] + 3
                msg.header.stamp.nanosec = 0
                depth.header, image.header = msg.header, msg.header
                for pub, m in ((h.pub_image, image), (h.pub_depth, depth), (h.pub_kp, msg)):
                    pub.publish(m)
                sent += 1
                h.wait_inputs(sent)
                continue
            expected["bad_depth_image"] += not depth_ok
            expected["bad_image"] += not image_ok
            for pub, m in ((h.pub_image, image), (h.pub_depth, depth), (h.pub_kp, msg)):
                pub.publish(m)
            sent += 1
            good_depth.append(depth_ok)
            good_image.append(image_ok)
            h.wait_outputs(len(good_depth))
            if image_ok:
                assert spin_until(h.executor, lambda: len(h.overlays) >= sum(good_image), 5.0), "overlay missing"
        assert len(h.out) == len(good_depth)
        # root from the depth image exactly when it was good; all outputs finite and near the truth
        sources = [o.skeletons[0].root_source for o in h.out]
        assert sources == [int(ok) for ok in good_depth]
        assert all(np.isfinite(_positions(o.skeletons[0])).all() for o in h.out)
        spin_until(h.executor, lambda: False, 0.3)
        assert len(h.overlays) == sum(good_image)
        diag = h.final_diagnostics(sent)
        got = +Counter({k[len("rejected_"):]: int(v) for k, v in diag.items()
                        if k.startswith("rejected_") and k != "rejected_total"})
        assert got == +expected, f"diagnostics {dict(got)} != sent {dict(expected)}"
        _check_warnings(h.logs, started, list(+expected))
        print(f"\nimages: {sent} keypoint + {2 * sent} image messages; {dict(+expected)}; "
              f"{len(h.out)} lifted, {sum(good_depth)} with depth roots, {len(h.overlays)} overlays")
    finally:
        h.close()


# ---- yolo_ros input (input_type yolo): yolo_msgs/DetectionArray, malformed ---------------------
YOLO_BURSTS = 40
YOLO_REJECTED = {"invalid_stamp": 0.4, "too_many_people": 0.25, "random": 0.6}
YOLO_ACCEPTED = {"bad_keypoint_id": 0.4, "nonfinite": 0.4, "duplicate_keypoint_id": 0.4, "duplicate_id": 0.2,
                 "other_class": 0.3, "no_keypoints": 0.3, "sparse": 0.2, "empty": 0.1}
# COCO-17 keypoints of the fuzzer's H36M-17 people: the H36M joint each sits on, and a pixel
# offset for the face (eyes and ears around the nose and head).
COCO_FROM_H36M = [9, 9, 9, 10, 10, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3]
COCO_FACE_OFFSET = np.zeros((17, 2))
COCO_FACE_OFFSET[1:5] = [(4, -4), (-4, -4), (8, 0), (-8, 0)]
BAD_KEYPOINT_IDS = (0, -1, 18, 100, INT32_MAX, -INT32_MAX - 1)
FLOAT32_BOUND = 3.402823466e38  # rosidl's float32 range: larger values reach the node as +-inf


class YoloFuzzer(Fuzzer):
    """Fuzz cases as yolo_ros publishes them. A person is [(1-based id, x, y, score)] entries;
    `ref` holds the coco17 arrays the lifter must see, written from the rules in docs/reliability.md
    (left-out keypoints are (0, 0, 0); bad and repeated ids left out, the first of a repeat kept;
    values beyond float32 are +-inf)."""

    def coco_person(self, omit: int | None = None) -> np.ndarray:
        h36m = self.person()
        kps = h36m[COCO_FROM_H36M].copy()
        kps[:, :2] += COCO_FACE_OFFSET
        n = int(self.rng.integers(0, 5)) if omit is None else omit  # below YOLO's threshold: left out
        kps[self.rng.choice(17, n, replace=False)] = np.nan  # marks "left out" until _entries
        return kps

    def entries(self, kps: np.ndarray) -> list:
        """The published entries of a (17,3) person, NaN rows left out, shuffled (YOLO sorts them;
        the node must not rely on it)."""
        out = [(k + 1, *map(float, kps[k])) for k in range(17) if not np.isnan(kps[k]).all()]
        self.rng.shuffle(out)
        return out

    @staticmethod
    def seen(entries) -> np.ndarray:
        """What the node must make of entries: (17,3) float32, first valid entry per id."""
        v = np.zeros((17, 3))
        done = set()
        for k, x, y, s in entries:
            if 1 <= k <= 17 and k not in done:
                done.add(k)
                v[k - 1] = (x, y, s)
        with np.errstate(invalid="ignore"):
            v = np.where(np.abs(v) > FLOAT32_BOUND, np.copysign(np.inf, v), v)
        return v.astype(np.float32).astype(np.float64)

    def yolo_case(self, kind, stamp, detections, reject=None, counts=None) -> Case:
        """detections: [(class_name, id, entries)]."""
        msg = _yolo_msg(stamp, detections)
        if reject:
            return Case(kind, msg, reject, Counter({reject: 1}))
        self.last_accepted = stamp
        people = [(i, self.seen(e)) for c, i, e in detections if c == "person" and e]
        values = np.stack([v for _, v in people]) if people else np.zeros((0, 17, 3))
        expected = _keypoint_counts(people) + (counts or Counter())
        return Case(kind, msg, None, +expected, (stamp, "coco17", [i for i, _ in people], values[..., :2],
                                                 values[..., 2]))

    def case(self, kind: str, stamp: int) -> Case:
        rng = self.rng
        person = lambda pid, **kw: ("person", pid, self.entries(self.coco_person(**kw)))  # noqa: E731
        if kind == "invalid_stamp":
            return self.yolo_case(kind, self.invalid_stamp(), [person("t")], "invalid_stamp")
        if kind == "too_many_people":
            n = 1000 if rng.random() < 0.2 else int(rng.integers(65, 200))  # 1,000 take 0.3 s to decode
            return self.yolo_case(kind, stamp, [("person", str(k), self.big_entries) for k in range(n)],
                                  "too_many_people")
        if kind == "random":
            return self.random_yolo_case(stamp)
        if kind == "bad_keypoint_id":
            dets = [person(i) for i in self.ids(int(rng.integers(1, 4)), "b")]
            bad = 0
            for _, _, e in dets:
                for _ in range(int(rng.integers(1, 4))):
                    e.insert(int(rng.integers(len(e) + 1)), (int(rng.choice(BAD_KEYPOINT_IDS)), 1.0, 2.0, 0.9))
                    bad += 1
            return self.yolo_case(kind, stamp, dets, counts=Counter(bad_keypoint_id=bad))
        if kind == "nonfinite":
            dets = []
            for i in self.ids(int(rng.integers(1, 4)), "n"):
                kps = self.coco_person(omit=0)
                for k in rng.choice(17, int(rng.integers(1, 6)), replace=False):
                    kps[k, rng.integers(3)] = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e39])
                dets.append(("person", i, [(k + 1, *map(float, kps[k])) for k in range(17)]))
            return self.yolo_case(kind, stamp, dets)
        if kind == "duplicate_keypoint_id":
            dets = [person(i) for i in self.ids(int(rng.integers(1, 3)), "k")]
            repeats = 0
            for _, _, e in dets:
                for _ in range(int(rng.integers(1, 4))):
                    k = e[int(rng.integers(len(e)))][0]
                    first = next(j for j, entry in enumerate(e) if entry[0] == k)
                    e.insert(int(rng.integers(first + 1, len(e) + 1)), (k, *self.random_keypoints(1)[0]))
                    repeats += 1
            return self.yolo_case(kind, stamp, dets, counts=Counter(duplicate_keypoint_id=repeats))
        if kind == "duplicate_id":
            ids = list(rng.choice(["d1", "d2"], int(rng.integers(3, 6))))
            return self.yolo_case(kind, stamp, [person(str(i)) for i in ids],
                                  counts=Counter(duplicate_id=len(ids) - len(set(ids))))
        if kind == "other_class":
            others = [(str(rng.choice(["car", "dog", "", "Person", "people"])), f"c{k}",
                       self.entries(self.coco_person()) if rng.random() < 0.5 else [])
                      for k in range(int(rng.integers(1, 5)))]
            dets = others + [person(i) for i in self.ids(int(rng.integers(0, 3)), "p")]
            rng.shuffle(dets)
            return self.yolo_case(kind, stamp, dets, counts=Counter(not_a_person=len(others)))
        if kind == "no_keypoints":
            empty = [("person", f"e{k}", []) for k in range(int(rng.integers(1, 4)))]
            dets = empty + [person(i) for i in self.ids(int(rng.integers(0, 3)), "q")]
            rng.shuffle(dets)
            return self.yolo_case(kind, stamp, dets, counts=Counter(no_keypoints=len(empty)))
        if kind == "sparse":  # two wrists cannot be lifted
            kps = self.coco_person(omit=0)
            return self.yolo_case(kind, stamp, [("person", "sp", [(10, *kps[9]), (11, *kps[10])])],
                                  counts=Counter(too_few_keypoints=1))
        if kind == "empty":
            return self.yolo_case(kind, stamp, [])
        raise ValueError(kind)

    def random_yolo_case(self, stamp: int) -> Case:
        """Every fault at random; the expected reason is the first failing check (stamp, people count)."""
        rng = self.rng
        bad_stamp = rng.random() < 0.2
        n = int(rng.integers(0, 6)) if rng.random() < 0.85 else int(rng.integers(65, 90))
        dets, counts = [], Counter()
        for k in range(n):
            r = rng.random()
            if r < 0.1:
                dets.append(("dog", f"r{k}", []))
                counts["not_a_person"] += 1
                continue
            if r < 0.2:
                dets.append(("person", f"r{k}", []))
                counts["no_keypoints"] += 1
                continue
            kps = self.coco_person()
            if rng.random() < 0.4:
                for j in rng.choice(17, int(rng.integers(1, 4)), replace=False):
                    kps[j, rng.integers(3)] = rng.choice([np.inf, 1e300, -1e6])
            e = self.entries(kps)
            for _ in range(int(rng.integers(0, 3))):
                if rng.random() < 0.5:
                    e.append((int(rng.choice(BAD_KEYPOINT_IDS)), 0.0, 0.0, 1.0))
                    counts["bad_keypoint_id"] += 1
                elif e:
                    e.append((e[0][0], 1.0, 1.0, 1.0))
                    counts["duplicate_keypoint_id"] += 1
            dets.append(("person", f"r{k}_{rng.integers(1000)}", e))
        people = sum(c == "person" and bool(e) for c, _, e in dets)
        if bad_stamp:
            case = self.yolo_case("random", self.invalid_stamp(), dets, "invalid_stamp")
        elif people > 64:
            case = self.yolo_case("random", stamp, dets, "too_many_people")
        else:
            case = self.yolo_case("random", stamp, dets, counts=counts)
        return case

    def yolo_bursts(self):
        """Yield the cases of YOLO_BURSTS bursts, each followed by one clean probe detection."""
        self.big_entries = self.entries(self.coco_person(omit=0))
        kinds = list(YOLO_REJECTED) + list(YOLO_ACCEPTED)
        weights = np.array(list(YOLO_REJECTED.values()) + list(YOLO_ACCEPTED.values()), float)
        for i in range(YOLO_BURSTS):
            probe_ns = self.t0 + i * NS // FPS
            n = int(self.rng.integers(5, 12))
            for j, kind in enumerate(self.rng.choice(kinds, n, p=weights / weights.sum())):
                yield self.case(str(kind), probe_ns - NS // FPS + (j + 1) * (NS // FPS) // (n + 2))
            kps = np.concatenate([self.v_uv[i][COCO_FROM_H36M] + COCO_FACE_OFFSET, np.full((17, 1), 0.95)], -1)
            yield self.yolo_case("probe", probe_ns, [("person", "v", self.entries(kps))])


def _yolo_msg(stamp, detections):
    """detections: [(class_name, id, [(1-based keypoint id, x, y, score)])]; stamp: ns or (sec, nanosec).
    Identical detections share one message object (serialised the same; 1,000 are slow to build)."""
    from yolo_msgs.msg import Detection, DetectionArray, KeyPoint2D
    msg = DetectionArray()
    msg.header.frame_id = FRAME
    sec, nanosec = divmod(stamp, NS) if isinstance(stamp, int) else stamp
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    built = {}
    for class_name, det_id, entries in detections:
        key = (class_name, id(entries))
        if key not in built:
            det = Detection(class_name=class_name, class_id=0 if class_name == "person" else 16, score=0.9)
            for k, x, y, s in entries:
                kp = KeyPoint2D(id=int(k), score=float(s))
                kp.point.x, kp.point.y = float(x), float(y)
                det.keypoints.data.append(kp)
            built[key] = det
        det = built[key]
        if det.id != det_id:  # a shared object keeps one id: copy only when the id differs
            det = Detection(class_name=det.class_name, class_id=det.class_id, score=det.score, id=det_id,
                            keypoints=det.keypoints)
        msg.detections.append(det)
    return msg


def test_fuzzed_yolo_detections_are_counted_by_reason_and_valid_ones_lift_exactly(ros_context):
    DetectionArray = pytest.importorskip("yolo_msgs.msg").DetectionArray  # a ROS workspace without yolo_ros
    h = FuzzHarness(ros_context, keypoints=(DetectionArray, "detections"), input_type="yolo",
                    input_reliability="reliable", warn_period=WARN_PERIOD, diagnostics_period=0.5, device="cpu")
    try:
        started = time.monotonic()
        now_ns = h.node.get_clock().now().nanoseconds
        fuzz = YoloFuzzer(SEED + 2, t0_ns=now_ns - 1000 * NS)
        fuzz.now_ns = now_ns
        h.pub_info.publish(good_camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        expected, sent_by_kind, accepted, sent, pending, thousands = Counter(), Counter(), [], 0, 0, 0
        for case in fuzz.yolo_bursts():
            sent += 1
            thousands += len(case.msg.detections) == 1000
            sent_by_kind[case.kind] += 1
            expected += case.counts
            if case.reject is None:  # one at a time through the newest-input mailbox
                h.wait_inputs(sent - 1)
                h.pub_kp.publish(case.msg)
                accepted.append(case)
                h.wait_outputs(len(accepted))
            else:
                h.pub_kp.publish(case.msg)
                pending += 1
                if pending == 4:
                    h.wait_inputs(sent)
                    pending = 0
        h.wait_inputs(sent)
        diag = h.final_diagnostics(sent)
        assert int(diag["inputs"]) == sent and int(diag["outputs"]) == len(accepted) == len(h.out)
        assert diag["dropped_behind"] == "0" and "rejected_internal_error" not in diag
        got = +_rejected_counts(diag)
        ref_counts = _check_against_a_fresh_lifter(h, accepted)
        expected["root_unsolved"] = ref_counts["root_unsolved"]  # no independent rule: the lifter's own
        assert got == +expected, f"diagnostics {dict(got)} != sent {dict(+expected)}"
        assert thousands >= 2 and min(sent_by_kind[k] for k in YOLO_ACCEPTED) >= 3, (thousands, sent_by_kind)
        _check_warnings(h.logs, started, list(+expected))
        print(f"\nyolo fuzz: {sent} DetectionArray messages ({thousands} of 1,000 detections) in {time.monotonic() - started:.0f} s; "
              f"by class {dict(sent_by_kind)}; counted {dict(got)}")
    finally:
        h.close()
