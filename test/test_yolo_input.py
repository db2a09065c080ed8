"""yolo_ros's yolo_msgs/DetectionArray as the lift node's input (input_type yolo): the conversion,
the interface package's wire identity with yolo_ros's, and the node over DDS lifting exactly what
it lifts from the same keypoints as Skeleton2DArray."""
import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from conftest import REPO, next_domain_id, spin_until
from posemoe_ros.msg import Skeleton2DArray, Skeleton3DArray
from posemoe_ros.ros.conversions import InputError, keypoints_from_msg, stamp_msg
from posemoe_ros.ros.lift_node import LiftNode
from posemoe_ros.ros.tools.scenario_player import ScenarioPlayer, camera_info_msg, detections_msg, keypoints_msg
from posemoe_ros.ros.yolo_input import skeletons_from_detections
from posemoe_ros.tools.scenario import Scenario, ScenarioConfig

yolo_msgs = pytest.importorskip("yolo_msgs.msg")
from yolo_msgs.msg import Detection, DetectionArray, KeyPoint2D  # noqa: E402

NS = 1_000_000_000
THRESHOLD = 0.5  # yolo_ros's default keypoint threshold
# yolo_msgs/msg/DetectionArray's RIHS01 type hash, from mgonzs13/yolo_ros's own definition (built
# from that repository): DDS peers with another hash would not be the same type.
YOLO_ROS_DETECTION_ARRAY_HASH = "RIHS01_719290b4e201b2b6f9aa59f01215bc15b774e7b822f7f6d931d68e5ba6354a6a"


def _detection(det_id: str, keypoints, class_name: str = "person") -> Detection:
    """keypoints: [(1-based id, x, y, score)]."""
    det = Detection(class_name=class_name, id=det_id)
    for k, x, y, score in keypoints:
        kp = KeyPoint2D(id=k, score=score)
        kp.point.x, kp.point.y = x, y
        det.keypoints.data.append(kp)
    return det


def test_detections_become_coco17_skeletons_and_what_cannot_be_used_is_counted():
    msg = DetectionArray(detections=[
        # shuffled ids, 3 left out (below YOLO's threshold), a NaN score, a coordinate beyond float32
        _detection("4", [(k, 10.0 * k, 20.0 * k + 0.25, 0.9) for k in (17, 2, 1, 5, 9, 3, 4, 6, 7, 8, 10, 11, 12, 14)]
                   + [(13, 1e300, 5.0, float("nan"))]),
        _detection("", [(1, 1.0, 2.0, 0.8), (0, 5.0, 5.0, 0.9), (18, 5.0, 5.0, 0.9), (-3, 1.0, 1.0, 1.0),
                        (1, 9.0, 9.0, 0.7), (2, 3.0, 4.0, 0.6), (2, 3.0, 4.0, 0.6)]),
        _detection("7", [(1, 1.0, 1.0, 0.9)], class_name="car"),
        _detection("8", []),
    ])
    msg.header.frame_id, msg.header.stamp = "cam", stamp_msg(5 * NS + 7)
    dropped = Counter()
    out = skeletons_from_detections(msg, (640, 480), 64, dropped)
    assert (out.header.frame_id, out.header.stamp.sec, out.header.stamp.nanosec) == ("cam", 5, 7)
    assert (out.width, out.height, out.layout) == (640, 480, "coco17")
    assert dropped == Counter(bad_keypoint_id=3, duplicate_keypoint_id=2, not_a_person=1, no_keypoints=1)
    ids, uv, conf = keypoints_from_msg(out, 64)
    assert ids == ["4", ""]
    expected = np.zeros((17, 3))
    for k in (17, 2, 1, 5, 9, 3, 4, 6, 7, 8, 10, 11, 12, 14):
        expected[k - 1] = (10.0 * k, 20.0 * k + 0.25, 0.9)
    expected[12] = (np.inf, 5.0, np.nan)
    np.testing.assert_array_equal(uv[0], expected[:, :2].astype(np.float32))
    np.testing.assert_array_equal(conf[0], expected[:, 2].astype(np.float32))
    # the first of repeated ids is kept; the rest of the second person is missing
    np.testing.assert_array_equal(uv[1, :2], [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(conf[1, :2], [0.8, 0.6], rtol=1e-6)
    assert not uv[1, 2:].any() and not conf[1, 2:].any()


def test_too_many_people_are_refused_before_reading_keypoints_and_other_classes_do_not_count():
    person = _detection("1", [(1, 1.0, 1.0, 0.9)])
    dropped = Counter()
    with pytest.raises(InputError) as err:
        skeletons_from_detections(DetectionArray(detections=[person] * 1000), None, 64, dropped)
    assert err.value.reason == "too_many_people"
    others = [_detection(str(i), [(1, 1.0, 1.0, 0.9)], class_name="dog") for i in range(1000)]
    out = skeletons_from_detections(DetectionArray(detections=others + [person]), None, 64, dropped)
    assert len(out.skeletons) == 1 and (out.width, out.height) == (0, 0)  # no CameraInfo yet: size unknown
    assert dropped == Counter(not_a_person=1000)


def test_the_players_detections_carry_the_scenarios_keypoints_above_the_threshold():
    s = Scenario(ScenarioConfig(num_people=3, duration=1.0, seed=2))
    omitted = 0
    for i in range(0, s.num_frames, 5):
        frame = s.frame(i)
        det = detections_msg(frame, Header(), THRESHOLD)
        assert [d.id for d in det.detections] == frame.ids
        ids, uv, conf = keypoints_from_msg(skeletons_from_detections(det, (s.width, s.height), 64, Counter()), 64)
        keep = frame.conf >= THRESHOLD
        omitted += int((~keep & (frame.conf > 0)).sum())
        np.testing.assert_array_equal(uv, np.where(keep[..., None], frame.uv, 0).astype(np.float32))
        np.testing.assert_array_equal(conf, np.where(keep, frame.conf, 0).astype(np.float32))
    assert omitted > 0  # the detector noise has keypoints YOLO would leave out


def test_the_interface_package_is_yolo_ros_on_the_wire():
    from ament_index_python.packages import get_package_share_directory

    description = json.loads((Path(get_package_share_directory("yolo_msgs")) / "msg" / "DetectionArray.json")
                             .read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
    assert hashes["yolo_msgs/msg/DetectionArray"] == YOLO_ROS_DETECTION_ARRAY_HASH
    assert Detection.get_fields_and_field_types() == {
        "class_id": "int32", "class_name": "string", "score": "double", "id": "string",
        "bbox": "yolo_msgs/BoundingBox2D", "bbox3d": "yolo_msgs/BoundingBox3D", "mask": "yolo_msgs/Mask",
        "keypoints": "yolo_msgs/KeyPoint2DArray", "keypoints3d": "yolo_msgs/KeyPoint3DArray"}


# ---- over DDS ----------------------------------------------------------------------------------
def _node(context, namespace: str, **params) -> LiftNode:
    params = {"input_reliability": "reliable", "device": "cpu", "warn_period": 60.0, **params}
    return LiftNode(context=context, namespace=namespace,
                    parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_yolo_input_lifts_exactly_what_the_same_keypoints_as_skeleton2d_give(ros_context):
    s = Scenario(ScenarioConfig(num_people=3, duration=2.0, seed=6))
    a, b = _node(ros_context, "a"), _node(ros_context, "b", input_type="yolo")
    peer = rclpy.create_node("peer", context=ros_context)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pub_kp = peer.create_publisher(Skeleton2DArray, "/a/keypoints_2d", qos)
    pub_det = peer.create_publisher(DetectionArray, "/b/detections", qos)
    pub_info = [peer.create_publisher(CameraInfo, f"/{n}/camera_info", qos) for n in "ab"]
    out = {"a": [], "b": []}
    for n in "ab":
        peer.create_subscription(Skeleton3DArray, f"/{n}/skeletons_3d", out[n].append, 100)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (a, b, peer):
        executor.add_node(node)
    try:
        assert spin_until(executor, lambda: pub_kp.get_subscription_count() and pub_det.get_subscription_count()
                          and all(p.get_subscription_count() for p in pub_info))
        for p in pub_info:
            p.publish(camera_info_msg(s.K, s.width, s.height, Header(frame_id="cam")))
        assert spin_until(executor, lambda: a._camera is not None and b._camera is not None, 5.0)
        t0 = a.get_clock().now().nanoseconds - 100 * NS
        for i in range(s.num_frames):
            frame = s.frame(i)
            header = Header(stamp=stamp_msg(t0 + round(frame.t * NS)), frame_id="cam")
            keep = frame.conf >= THRESHOLD  # the keypoints YOLO publishes; the rest missing in both
            same = dataclasses.replace(frame, uv=np.where(keep[..., None], frame.uv, 0.0),
                                       conf=np.where(keep, frame.conf, 0.0))
            pub_kp.publish(keypoints_msg(same, header, s.width, s.height))
            pub_det.publish(detections_msg(frame, header, THRESHOLD))
            assert spin_until(executor, lambda: len(out["a"]) > i and len(out["b"]) > i, 10.0), i
        people = 0
        for oa, ob in zip(out["a"], out["b"]):
            assert (oa.header.stamp, oa.header.frame_id) == (ob.header.stamp, ob.header.frame_id)
            assert [p.id for p in oa.skeletons] == [p.id for p in ob.skeletons]
            for pa, pb in zip(oa.skeletons, ob.skeletons):
                xyz = lambda points: np.array([[q.x, q.y, q.z] for q in points])  # noqa: E731
                np.testing.assert_allclose(xyz(pb.positions), xyz(pa.positions), atol=1e-6, rtol=0)
                np.testing.assert_allclose(xyz([pb.root_position]), xyz([pa.root_position]), atol=1e-6, rtol=0)
                people += 1
        assert len(out["a"]) == len(out["b"]) == s.num_frames and people > 2 * s.num_frames
        assert not b.stats.rejected - Counter(a.stats.rejected)  # no reason of its own
    finally:
        executor.shutdown()
        for node in (a, b, peer):
            node.destroy_node()


def test_the_scenario_player_as_yolo_ros_drives_the_node(ros_context):
    node = _node(ros_context, "", input_type="yolo", input_reliability="best_effort")
    player = ScenarioPlayer(context=ros_context, parameter_overrides=[
        Parameter("output_type", value="yolo"), Parameter("duration", value=1.5), Parameter("num_people", value=2),
        Parameter("wait_for_subscribers", value=1), Parameter("lead_in", value=0.2)])
    peer = rclpy.create_node("peer", context=ros_context)
    out = []
    peer.create_subscription(Skeleton3DArray, "skeletons_3d", out.append, 100)
    executor = SingleThreadedExecutor(context=ros_context)
    for n in (node, player, peer):
        executor.add_node(n)
    try:
        assert spin_until(executor, lambda: player.done, 20.0)
        spin_until(executor, lambda: node.stats.outputs + node.stats.dropped >= len(player.stamps), 5.0)
        assert len(out) > len(player.stamps) // 2, (len(out), len(player.stamps))
        for msg in out:
            i = player.frame_index(msg.header.stamp.sec * NS + msg.header.stamp.nanosec)
            assert i is not None
            assert sorted(p.id for p in msg.skeletons) == sorted(player.scenario.frame(i).ids)
        errors = []
        for msg in out[-10:]:  # the roots where the scenario's truth puts them
            truth = dict(zip(player.scenario.frame(player.frame_index(
                msg.header.stamp.sec * NS + msg.header.stamp.nanosec)).ids, player.scenario.frame(
                player.frame_index(msg.header.stamp.sec * NS + msg.header.stamp.nanosec)).truth))
            errors += [np.linalg.norm(np.array([p.root_position.x, p.root_position.y, p.root_position.z])
                                      - truth[p.id][0]) for p in msg.skeletons]
        assert np.mean(errors) < 0.5, errors
        assert not node.stats.rejected, node.stats.rejected
    finally:
        executor.shutdown()
        for n in (node, player, peer):
            n.destroy_node()


def test_yolo_input_without_yolo_msgs_stops_at_start_up_with_one_line_saying_what_to_install():
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    # sys.modules[name] = None makes `import yolo_msgs` fail as if it were not installed
    code = ("import sys; sys.modules['yolo_msgs'] = None; from posemoe_ros.ros.lift_node import main; "
            "sys.exit(main())")
    run = subprocess.run([sys.executable, "-c", code, "--ros-args", "-p", "input_type:=yolo"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    out = run.stdout + run.stderr
    lines = [line for line in out.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in out, out
    assert "FATAL" in lines[0] and "yolo_msgs" in lines[0] and "yolo_ros" in lines[0], lines[0]


def test_yolo_input_pairs_with_depth_of_the_camera_info_size(ros_context):
    """yolo detections carry no image size: the aligned depth image must have CameraInfo's."""
    from sensor_msgs.msg import Image
    from posemoe_ros.geometry.camera import project
    from posemoe_ros.msg import Skeleton3D
    from posemoe_ros.ros.fallbacks import numpy_to_image
    from test_fuzz import COCO_FACE_OFFSET, COCO_FROM_H36M, _yolo_msg
    from test_lift_node import K, Harness, camera_info, synthetic_person, torso_depth_image

    h = Harness(ros_context, keypoints=(DetectionArray, "detections"), input_type="yolo",
                input_reliability="reliable", use_depth=True, warn_period=60.0, device="cpu")
    try:
        pub_depth = h.peer.create_publisher(Image, "depth", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None and pub_depth.get_subscription_count() > 0)
        truth = synthetic_person(0.5)
        uv = project(truth, K)[:, COCO_FROM_H36M] + COCO_FACE_OFFSET
        t0 = h.node.get_clock().now().nanoseconds - 10 * NS
        for i in range(len(truth)):
            msg = _yolo_msg(t0 + i * NS // 30, [("person", "3", [(k + 1, x, y, 0.9) for k, (x, y) in enumerate(uv[i])])])
            depth = torso_depth_image(truth[i])
            pub_depth.publish(numpy_to_image(depth if i % 2 else depth[::2, ::2].copy(), "16UC1", msg.header))
            h.send(msg, expect_outputs=i + 1)
            (person,) = h.out[-1].skeletons
            # odd frames: the full-size depth fixes the root; even: half size, not aligned, ignored
            assert person.root_source == (Skeleton3D.ROOT_SOURCE_DEPTH if i % 2 else Skeleton3D.ROOT_SOURCE_REPROJECTION)
            if i % 2:
                root = np.array([person.root_position.x, person.root_position.y, person.root_position.z])
                assert np.linalg.norm(root - truth[i, 0]) < 0.3
        assert h.node.stats.rejected == Counter(bad_depth_image=(len(truth) + 1) // 2)
    finally:
        h.close()


def test_yolo_input_before_camera_info_needs_the_principal_point_it_cannot_guess(ros_context):
    from rcl_interfaces.msg import Log
    from test_fuzz import _yolo_msg
    from test_lift_node import Harness

    h = Harness(ros_context, keypoints=(DetectionArray, "detections"), input_type="yolo",
                input_reliability="reliable", fx=600.0, warn_period=60.0, device="cpu")
    try:
        person = [("person", "1", [(k + 1, 300.0 + 3 * k, 100.0 + 15 * k, 0.9) for k in range(17)])]
        t0 = h.node.get_clock().now().nanoseconds - 10 * NS
        h.send(_yolo_msg(t0, person))  # no image size, so no image centre: waits
        assert h.out == [] and h.node.stats.rejected == Counter(no_camera_info=1)
        assert spin_until(h.executor, lambda: any("no image size" in log.msg for log in h.logs if log.level == Log.WARN))
        assert all(r.successful for r in h.node.set_parameters([Parameter("cx", value=319.5),
                                                               Parameter("cy", value=239.5)]))
        h.send(_yolo_msg(t0 + NS // 30, person), expect_outputs=1)
        assert [p.id for p in h.out[0].skeletons] == ["1"]
    finally:
        h.close()
