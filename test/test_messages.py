"""Every posemoe_ros message type round-trips through real DDS between two rclpy nodes."""
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

from conftest import spin_until
from geometry_msgs.msg import Point
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray, Skeleton3D, Skeleton3DArray
from std_msgs.msg import Header
from builtin_interfaces.msg import Duration, Time


def _header() -> Header:
    return Header(stamp=Time(sec=1_700_000_123, nanosec=456_789), frame_id="camera_color_optical_frame")


def _skeleton2d(i: int) -> Skeleton2D:
    # Values exactly representable in float32, so equality after the round trip is exact.
    return Skeleton2D(id=str(i), keypoints=[
        Keypoint2D(x=10.5 + k, y=200.25 - k, confidence=k / 16.0) for k in range(17)])


def _skeleton3d(i: int) -> Skeleton3D:
    return Skeleton3D(
        id=f"person_{i}",
        joint_names=["pelvis", "r_hip", "l_hip"],
        positions=[Point(x=0.1 * i, y=-0.2, z=2.5), Point(x=0.0, y=0.1, z=2.4), Point(x=0.2, y=0.1, z=2.6)],
        confidence=[0.875, 0.5, 0.0],
        root_position=Point(x=0.1 * i, y=-0.2, z=2.5),
        root_source=Skeleton3D.ROOT_SOURCE_DEPTH,
    )


MESSAGES = {
    "Keypoint2D": Keypoint2D(x=320.5, y=-1.25, confidence=0.75),
    "Skeleton2D": _skeleton2d(7),
    "Skeleton2DArray": Skeleton2DArray(
        header=_header(), width=1280, height=720, layout=Skeleton2DArray.LAYOUT_COCO17,
        skeletons=[_skeleton2d(1), _skeleton2d(2), Skeleton2D(id="", keypoints=[])]),
    "Skeleton3D": _skeleton3d(3),
    "Skeleton3DArray": Skeleton3DArray(
        header=_header(), latency=Duration(sec=0, nanosec=4_200_000), lookahead=4,
        skeletons=[_skeleton3d(1), _skeleton3d(2)]),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_round_trips_over_dds(ros_context, name):
    import rclpy

    sent = MESSAGES[name]
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_node = rclpy.create_node("roundtrip_pub", context=ros_context)
    sub_node = rclpy.create_node("roundtrip_sub", context=ros_context)
    received = []
    sub_node.create_subscription(type(sent), "roundtrip", received.append, qos)
    pub = pub_node.create_publisher(type(sent), "roundtrip", qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    try:
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0)
        pub.publish(sent)
        assert spin_until(executor, lambda: received), f"{name} never arrived"
        got = received[0]
        assert got is not sent
        assert got == sent
        for field in sent.get_fields_and_field_types():
            assert getattr(got, field) == getattr(sent, field), field
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
