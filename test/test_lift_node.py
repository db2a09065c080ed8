"""The lift node over real DDS, with the shipped weights: a synthetic person in, 3D skeletons,
TF and markers out; bad input counted and survived."""
import gc
import math

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from conftest import spin_until
from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.geometry.camera import project
from posemoe_ros.geometry.stature import bone_lengths, standing_height
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray, Skeleton3DArray
from posemoe_ros.ros.lift_node import LiftNode
from posemoe_ros.skeleton import JOINT_NAMES

FRAME = "camera_optical_frame"
K = np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]])
FPS = 30
# The bound on MPJPE against the truth for a clean, well-framed synthetic walker. docs/results.md
# gives the shipped model's error on held-out CMU subjects under detector noise; this input has
# almost none, but the procedural skeleton is not a mocap body, so the bound keeps a wide margin.
MPJPE_BOUND_M = 0.15
ROOT_BOUND_M = 0.3  # the bound on the root position, monocular


def synthetic_person(seconds: float = 2.0):
    """Camera-frame joints (F,17,3) of a procedural walker ~4 m in front of a camera 1.2 m high."""
    world = generate_motion("walk", seconds=seconds, fps=FPS, seed=3)  # Y up
    # Camera at (0, 1.2, -4) looking along +Z: optical x = -X, y = -Y (down), z = +Z.
    cam = np.stack([-world[..., 0], -(world[..., 1] - 1.2), world[..., 2] + 4.0 - world[:1, :1, 2]], -1)
    return cam


def keypoint_msg(stamp_ns: int, people_uv, ids, layout="h36m17", conf=0.9):
    msg = Skeleton2DArray(width=640, height=480, layout=layout)
    msg.header.frame_id = FRAME
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.skeletons = [Skeleton2D(id=i, keypoints=[Keypoint2D(x=float(u), y=float(v), confidence=conf)
                                                 for u, v in uv]) for uv, i in zip(people_uv, ids)]
    return msg


def camera_info():
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id = FRAME
    info.k = K.flatten().tolist()
    return info


class Harness:
    """The node under test plus a peer node that publishes inputs and records every output."""

    def __init__(self, context, keypoints=(Skeleton2DArray, "keypoints_2d"), **params):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = LiftNode(context=context, parameter_overrides=overrides)
        self.peer = rclpy.create_node("peer", context=context)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_kp = self.peer.create_publisher(*keypoints, reliable)  # (type, topic) of the node's input
        self.pub_info = self.peer.create_publisher(CameraInfo, "camera_info", reliable)
        self.out, self.tf, self.markers, self.diag, self.logs = [], [], [], [], []
        self.peer.create_subscription(Skeleton3DArray, "skeletons_3d", self.out.append, 100)
        self.peer.create_subscription(TFMessage, "/tf", self.tf.append, 100)
        self.peer.create_subscription(MarkerArray, "skeleton_markers", self.markers.append, 100)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, 10)
        self.peer.create_subscription(Log, "/rosout", self.logs.append, 100)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        assert spin_until(self.executor, lambda: self.pub_kp.get_subscription_count() > 0
                          and self.pub_info.get_subscription_count() > 0)

    def send(self, msg, expect_outputs: int | None = None, timeout=10.0):
        self.pub_kp.publish(msg)
        if expect_outputs is not None:
            assert spin_until(self.executor, lambda: len(self.out) >= expect_outputs, timeout), \
                f"expected {expect_outputs} outputs, got {len(self.out)}"
        else:
            spin_until(self.executor, lambda: False, 0.3)

    def diagnostics(self):
        self.diag.clear()
        assert spin_until(self.executor, lambda: self.diag, 5.0)
        return {kv.key: kv.value for kv in self.diag[-1].status[0].values}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


def _started_harness(ros_context, **params) -> Harness:
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, warn_period=60.0, **params)
    h.pub_info.publish(camera_info())
    return h


@pytest.fixture
def harness(ros_context):
    h = _started_harness(ros_context)
    yield h
    h.close()


def _stamp(i: int) -> int:
    return 1_700_000_000_000_000_000 + i * 1_000_000_000 // FPS


@pytest.fixture
def walker_harness(ros_context):
    """The node set up as an integrator would for the people it meets: body_height is this
    walker's stature (1.78 m by stature.py's measure). With the default 1.70 m, the 4.5 % height
    gap alone moves the root 0.18-0.29 m at 4-6.5 m (bench/root_depth.py measures that effect), so
    a bound here would test the prior, not the lifting."""
    stature = float(standing_height(bone_lengths(synthetic_person()[:1]))[0])
    h = _started_harness(ros_context, body_height=round(stature, 2))
    yield h
    h.close()


def test_lifts_a_synthetic_person_to_metric_3d_with_tf_and_markers(walker_harness):
    harness = walker_harness
    truth = synthetic_person()
    uv = project(truth, K)
    spin_until(harness.executor, lambda: harness.node._camera is not None, 5.0)
    frames = len(truth)
    for i in range(frames):
        harness.send(keypoint_msg(_stamp(i), [uv[i]], ["7"]), expect_outputs=i + 1)
    assert len(harness.out) == frames  # one output per input

    errors, root_errors = [], []
    for i, out in enumerate(harness.out):
        assert (out.header.stamp.sec * 10**9 + out.header.stamp.nanosec) == _stamp(i)
        assert out.header.frame_id == FRAME
        (person,) = out.skeletons
        assert person.id == "7" and list(person.joint_names) == list(JOINT_NAMES)
        pred = np.array([[p.x, p.y, p.z] for p in person.positions])
        root = np.array([person.root_position.x, person.root_position.y, person.root_position.z])
        root_errors.append(np.linalg.norm(root - truth[i, 0]))
        errors.append(np.linalg.norm((pred - pred[0]) - (truth[i] - truth[i, 0]), axis=-1).mean())
    # 4-6.5 m away, monocular: every frame within the bound, and the median within the
    # 0.15 m that issue 13 asks of a person of known stature
    assert max(root_errors) < ROOT_BOUND_M, f"root error up to {max(root_errors):.2f} m"
    assert np.median(root_errors) < 0.15, f"median root error {np.median(root_errors):.2f} m"
    assert np.mean(errors[26:]) < MPJPE_BOUND_M, f"MPJPE {np.mean(errors[26:]) * 1000:.0f} mm"

    assert spin_until(harness.executor, lambda: harness.tf and harness.markers)
    frames_seen = {(t.header.frame_id, t.child_frame_id) for m in harness.tf for t in m.transforms}
    assert (FRAME, "body_7") in frames_seen
    assert all(("body_7", f"{name}_7") in frames_seen for name in JOINT_NAMES)
    markers = harness.markers[-1].markers
    assert {m.ns for m in markers} == {"person_7"}
    assert all(m.pose.orientation.w == 1.0 and m.lifetime.nanosec + m.lifetime.sec > 0 for m in markers)


def test_bad_input_is_counted_warned_once_and_the_next_valid_message_lifts(harness):
    truth = synthetic_person(1.0)
    uv = project(truth, K)
    spin_until(harness.executor, lambda: harness.node._camera is not None, 5.0)
    nan_uv = uv[1].copy()
    nan_uv[3] = np.nan
    bad = [
        keypoint_msg(_stamp(0), [uv[0][:12]], ["1"]),  # wrong keypoint count for h36m17
        keypoint_msg(_stamp(0), [uv[0]], ["1"], layout="openpose_hands"),  # unknown layout
        keypoint_msg(_stamp(0), [uv[0][:12]], ["1"]),  # the same again: counted, not warned again
    ]
    for msg in bad:
        harness.send(msg)
    assert harness.out == []
    # A NaN joint costs that joint, not the person; an empty list yields an empty output.
    harness.send(keypoint_msg(_stamp(1), [nan_uv], ["1"]), expect_outputs=1)
    assert len(harness.out[-1].skeletons) == 1
    assert all(math.isfinite(p.x) for p in harness.out[-1].skeletons[0].positions)
    harness.send(keypoint_msg(_stamp(2), [], []), expect_outputs=2)
    assert harness.out[-1].skeletons == []
    harness.send(keypoint_msg(_stamp(3), [uv[3]], ["1"]), expect_outputs=3)
    assert harness.out[-1].skeletons[0].id == "1"

    diag = harness.diagnostics()
    assert diag["rejected_wrong_keypoint_count"] == "2"
    assert diag["rejected_unknown_layout"] == "1"
    assert int(diag["rejected_nonfinite_keypoints"]) >= 1
    warnings = [log.msg for log in harness.logs if log.level == Log.WARN]
    assert sum("wrong_keypoint_count" in w for w in warnings) == 1, warnings
    assert sum("unknown_layout" in w for w in warnings) == 1, warnings


def test_waits_for_camera_info_and_reports_an_all_zero_k(ros_context):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2)
    try:
        uv = project(synthetic_person(0.2), K)
        h.send(keypoint_msg(_stamp(0), [uv[0]], ["1"]))
        assert h.out == []
        diag = h.diagnostics()
        assert diag["rejected_no_camera_info"] == "1"
        zero = camera_info()
        zero.k = [0.0] * 9
        h.pub_info.publish(zero)
        spin_until(h.executor, lambda: h.node._camera_error is not None, 5.0)
        assert "all-zero K" in h.diag[-1].status[0].message or h.diagnostics()["rejected_bad_camera_info"] == "1"
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        h.send(keypoint_msg(_stamp(1), [uv[1]], ["1"]), expect_outputs=1)
    finally:
        h.close()


def test_parameter_updates_are_validated_and_applied_at_run_time(ros_context):
    h = Harness(ros_context)
    try:
        result = h.node.set_parameters([Parameter("lookahead", value=10_000)])[0]
        assert not result.successful and "lookahead" in result.reason
        result = h.node.set_parameters([Parameter("device", value="tpu")])[0]
        assert not result.successful and "device" in result.reason
        assert h.node.set_parameters([Parameter("lookahead", value=4)])[0].successful
        assert h.node.lifter.config.lookahead == 4
        assert h.node.set_parameters([Parameter("min_confidence", value=0.5)])[0].successful
        assert h.node.lifter.config.min_confidence == 0.5
    finally:
        h.close()


def test_a_destroyed_node_is_gone_at_once_and_its_successor_logs_to_rosout(ros_context):
    """A node re-created under the same name in one process (a component container) logs through
    its own /rosout publisher only if the old node really went away, not at the next garbage collection."""
    gc.disable()  # what rclpy leaves to the collector must not be cleaned up behind the test's back
    try:
        h = Harness(ros_context)
        h.node.destroy_node()
        assert spin_until(h.executor, lambda: "posemoe_lift" not in h.peer.get_node_names(), 5.0)
        h.node = LiftNode(context=ros_context)
        h.executor.add_node(h.node)
        h.node.get_logger().warning("successor speaking")
        assert spin_until(h.executor, lambda: any(log.msg == "successor speaking" for log in h.logs), 5.0)
        h.close()
    finally:
        gc.enable()


def torso_depth_image(joints_cam: np.ndarray) -> np.ndarray:
    """A 16UC1 depth image (mm) of what a depth camera sees of the torso: its front surface,
    TORSO_DEPTH_OFFSET in front of the joints, as 9x9 patches; 0 (no return) elsewhere."""
    from posemoe_ros.geometry.root_translation import TORSO_DEPTH_OFFSET, TORSO_JOINTS
    depth = np.zeros((480, 640), np.uint16)
    for j in TORSO_JOINTS:
        u, v = np.rint(project(joints_cam[j], K)).astype(int)
        depth[max(v - 4, 0):v + 5, max(u - 4, 0):u + 5] = round((joints_cam[j, 2] - TORSO_DEPTH_OFFSET) * 1000)
    return depth


def test_depth_image_fixes_the_root_depth(ros_context):
    from sensor_msgs.msg import Image
    from posemoe_ros.msg import Skeleton3D
    from posemoe_ros.ros.fallbacks import numpy_to_image
    h = Harness(ros_context, input_reliability="reliable", use_depth=True)
    try:
        pub_depth = h.peer.create_publisher(Image, "depth", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None and pub_depth.get_subscription_count() > 0)
        truth = synthetic_person(1.0)
        uv = project(truth, K)
        root_errors = []
        for i in range(len(truth)):
            msg = keypoint_msg(_stamp(i), [uv[i]], ["3"])
            pub_depth.publish(numpy_to_image(torso_depth_image(truth[i]), "16UC1", msg.header))
            h.send(msg, expect_outputs=i + 1)
            (person,) = h.out[-1].skeletons
            assert person.root_source == Skeleton3D.ROOT_SOURCE_DEPTH
            root = np.array([person.root_position.x, person.root_position.y, person.root_position.z])
            root_errors.append(np.linalg.norm(root - truth[i, 0]))
        # The 0.3 m bound on the root holds once a depth image fixes the scale.
        assert max(root_errors) < 0.3, f"root error up to {max(root_errors):.3f} m"
    finally:
        h.close()
