"""The node as a ROS user meets it, over DDS: sim time, resolved topic names in the log, what is
advertised, what the parameter descriptors say."""
import re

from builtin_interfaces.msg import Time
from rcl_interfaces.msg import Log, Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo

import rclpy
from conftest import REPO, spin_until
from posemoe_ros.geometry.camera import project
from posemoe_ros.msg import Skeleton2DArray, Skeleton3DArray
from posemoe_ros.ros.lift_node import PARAMETERS, LiftNode
from test_lift_node import K, Harness, camera_info, keypoint_msg, synthetic_person

T0 = 1_000 * 10**9  # a bag's clock: far from the wall clock


def test_with_use_sim_time_stamp_checks_and_track_timeouts_follow_clock(ros_context):
    h = Harness(ros_context, use_sim_time=True, max_stamp_ahead=1.0, track_timeout=0.5, diagnostics_period=0.1,
                input_reliability="reliable", warn_period=60.0)
    try:
        pub_clock = h.peer.create_publisher(Clock, "/clock", 10)

        def set_clock(ns: int):
            """What `ros2 bag play --clock` publishes."""
            pub_clock.publish(Clock(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))
            assert spin_until(h.executor, lambda: h.node.get_clock().now().nanoseconds == ns, 5.0)

        def stamp_of(report) -> int:
            return report.header.stamp.sec * 10**9 + report.header.stamp.nanosec

        def report_after_clock_step():
            """The diagnostics report the next /clock step triggers (one sent before may still arrive)."""
            tick = h.node.get_clock().now().nanoseconds + 150_000_000
            set_clock(tick)
            assert spin_until(h.executor, lambda: h.diag and stamp_of(h.diag[-1]) >= tick, 5.0)
            assert stamp_of(h.diag[-1]) == tick  # stamped with /clock time, not the wall clock
            return {kv.key: kv.value for kv in h.diag[-1].status[0].values}

        def people_tracked() -> int:
            return int(report_after_clock_step()["people_tracked"])

        uv = project(synthetic_person(0.5), K)
        set_clock(T0)
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        h.send(keypoint_msg(T0, [uv[0]], ["5"]), expect_outputs=1)

        # 3 s ahead of /clock: rejected (on the wall clock, 1,000 s after the epoch is long past)
        h.send(keypoint_msg(T0 + 3 * 10**9, [uv[1]], ["5"]))
        assert len(h.out) == 1
        # A gap of 0.3 s of /clock time keeps track 5, though 1 s of wall time went by ...
        spin_until(h.executor, lambda: False, 1.0)
        set_clock(T0 + 300_000_000)
        h.send(keypoint_msg(T0 + 300_000_000, [uv[2]], ["6"]), expect_outputs=2)
        assert people_tracked() == 2
        # ... and 0.9 s of /clock time, gone by at once on the wall clock, drops it (track_timeout 0.5).
        set_clock(T0 + 900_000_000)
        h.send(keypoint_msg(T0 + 900_000_000, [uv[3]], ["6"]), expect_outputs=3)
        assert people_tracked() == 1
        # The stamp once ahead is fine once /clock has caught up.
        set_clock(T0 + 3 * 10**9)
        h.send(keypoint_msg(T0 + 3 * 10**9, [uv[4]], ["6"]), expect_outputs=4)
        assert report_after_clock_step()["rejected_invalid_stamp"] == "1"
    finally:
        h.close()


class NamespacedPeer:
    """A LiftNode in namespace cam1 with camera_info remapped (as lift.launch.py does it), and a
    peer publishing on the resolved names and recording /rosout."""

    def __init__(self, context, **params):
        self.node = LiftNode(context=context, namespace="cam1",
                             cli_args=["--ros-args", "-r", "camera_info:=/camera/color/camera_info"],
                             parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.peer = rclpy.create_node("peer", context=context)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_kp = self.peer.create_publisher(Skeleton2DArray, "/cam1/keypoints_2d", reliable)
        self.pub_info = self.peer.create_publisher(CameraInfo, "/camera/color/camera_info", reliable)
        self.out, self.logs = [], []
        self.peer.create_subscription(Skeleton3DArray, "/cam1/skeletons_3d", self.out.append, 100)
        # transient local, as /rosout is published: the activation line came before this peer
        self.peer.create_subscription(Log, "/rosout", self.logs.append,
                                      QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        assert spin_until(self.executor, lambda: self.pub_kp.get_subscription_count() > 0
                          and self.pub_info.get_subscription_count() > 0)

    def lines(self, level=None) -> list[str]:
        return [log.msg for log in self.logs if log.name.endswith("posemoe_lift") and (level is None or log.level == level)]

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


def test_logs_the_resolved_topics_once_and_the_first_camera_info_once(ros_context):
    h = NamespacedPeer(ros_context, input_reliability="reliable", warn_period=60.0)
    try:
        uv = project(synthetic_person(0.2), K)
        assert spin_until(h.executor, lambda: any(line.startswith("lifting ") for line in h.lines()), 5.0)
        (active,) = [line for line in h.lines(Log.INFO) if line.startswith("lifting ")]
        for name in ("/camera/color/camera_info", "/cam1/keypoints_2d", "/cam1/skeletons_3d",
                     "/cam1/skeleton_markers", "/tf", "/diagnostics", h.node.lifter.model_description,
                     str(h.node.lifter.device)):
            assert name in active, (name, active)
        assert "overlay" not in active

        h.pub_kp.publish(keypoint_msg(1_700_000_000 * 10**9, [uv[0]], ["1"]))
        assert spin_until(h.executor, lambda: h.lines(Log.WARN), 5.0)
        (waiting,) = h.lines(Log.WARN)
        assert "no CameraInfo received yet on /camera/color/camera_info" in waiting, waiting

        h.pub_info.publish(camera_info())
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        spin_until(h.executor, lambda: False, 0.5)
        first = [line for line in h.lines(Log.INFO) if "CameraInfo" in line]
        assert len(first) == 1 and "/camera/color/camera_info" in first[0] and "640x480" in first[0], first
        assert len([line for line in h.lines() if line.startswith("lifting ")]) == 1
    finally:
        h.close()


def test_overlay_is_advertised_only_with_publish_overlay(ros_context):
    without = Harness(ros_context)
    try:
        spin_until(without.executor, lambda: False, 0.5)
        assert without.peer.count_publishers("/overlay") == 0
        assert without.peer.count_publishers("/skeletons_3d") == 1
    finally:
        without.close()
    with_overlay = Harness(ros_context, publish_overlay=True)
    try:
        assert spin_until(with_overlay.executor, lambda: with_overlay.peer.count_publishers("/overlay") == 1, 5.0)
    finally:
        with_overlay.close()


def test_body_height_descriptor_says_what_is_accepted(ros_context):
    """What `ros2 param describe` and `ros2 param set` see, through the node's services."""
    h = Harness(ros_context)
    try:
        def call(srv_type, name, request):
            client = h.peer.create_client(srv_type, f"/posemoe_lift/{name}")
            assert spin_until(h.executor, client.service_is_ready, 5.0)
            future = client.call_async(request)
            assert spin_until(h.executor, future.done, 5.0)
            return future.result()

        (descriptor,) = call(DescribeParameters, "describe_parameters",
                             DescribeParameters.Request(names=["body_height"])).descriptors
        assert not descriptor.floating_point_range  # it cannot say "0, or 0.3 to 2.5"
        assert "0.3 to 2.5 m" in descriptor.additional_constraints and "0 (" in descriptor.additional_constraints

        def set_body_height(value: float) -> bool:
            param = ParameterMsg(name="body_height", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                          double_value=value))
            return call(SetParameters, "set_parameters", SetParameters.Request(parameters=[param])).results[0].successful

        accepted = {v: set_body_height(v) for v in (0.0, 0.1, 0.29, 0.3, 1.8, 2.5, 2.6, -1.0)}
        assert accepted == {0.0: True, 0.1: False, 0.29: False, 0.3: True, 1.8: True, 2.5: True, 2.6: False,
                            -1.0: False}
    finally:
        h.close()


def test_documented_param_set_commands_use_the_declared_types():
    """`ros2 param set /posemoe_lift body_height 2` sends an integer, which a double parameter refuses."""
    commands = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        commands += re.findall(r"ros2 param set \S+ (\w+) ([^`\s]+)", doc.read_text())
    assert ("body_height", "1.80") in commands
    for name, value in commands:
        default = PARAMETERS[name].default
        if isinstance(default, float):
            assert re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", value), f"ros2 param set {name} {value}: not a float"
        elif isinstance(default, bool):
            assert value in ("true", "false")
        elif isinstance(default, int):
            assert re.fullmatch(r"-?\d+", value)
