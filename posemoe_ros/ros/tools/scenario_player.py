"""A virtual camera and detector for the demo: plays posemoe_ros.tools.scenario.Scenario as ROS topics.

Publishes, at `rate` Hz from a timer: camera_info (sensor_msgs/CameraInfo), keypoints_2d
(posemoe_ros/Skeleton2DArray, coco17, with the documented detector noise) and the true 3D joints
on skeletons_3d_truth (posemoe_ros/Skeleton3DArray). Frame i is stamped start + t_i on the node
clock; for `lead_in` seconds before the first frame only CameraInfo is published (a camera is
running before anyone is detected), counted from when keypoints_2d has `wait_for_subscribers`
subscribers. After `duration` seconds of frames it sets `done` and stops.

With `output_type` yolo it plays yolo_ros instead: yolo_msgs/DetectionArray on `detections`, as
yolo_ros's YOLO-pose model and tracker publish it, in place of keypoints_2d.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import Point
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray, Skeleton3D, Skeleton3DArray
from posemoe_ros.ros import shutdown
from posemoe_ros.ros.conversions import stamp_msg
from posemoe_ros.skeleton import JOINT_NAMES
from posemoe_ros.tools.scenario import Scenario, ScenarioConfig, ScenarioFrame

# name: (default, description, (min, max) or None)
PARAMETERS = {
    "rate": (30.0, "Frames per second of the virtual camera (and the scenario's frame rate)", (1.0, 240.0)),
    "num_people": (3, "People in the scene: walker, waver, late, then procedural extras", (1, 64)),
    "duration": (10.0, "Seconds of scenario to play; the node then reports done and stops", (0.1, 3600.0)),
    "seed": (0, "Seed of the motions and the detector noise", (0, 2**31 - 1)),
    "noise": (True, "Simulate detector noise; false = a perfect detector", None),
    "frame_id": ("camera_optical_frame", "Frame of the camera (REP-103 optical frame)", None),
    "realtime": (True, "Publish one frame every 1/rate s; false = as fast as the executor allows (stamps "
                 "still advance by 1/rate)", None),
    "lead_in": (0.5, "Seconds of CameraInfo alone before the first keypoints", (0.0, 60.0)),
    "wait_for_subscribers": (0, "Hold the first frame until keypoints_2d has this many subscribers (a lift "
                             "node still loading its model); 0 = start at once", (0, 100)),
    "output_type": ("skeleton2d", "skeleton2d: posemoe_ros/Skeleton2DArray on keypoints_2d; yolo: "
                    "yolo_msgs/DetectionArray on detections, as yolo_ros publishes it", None),
    "yolo_threshold": (0.5, "With output_type yolo: keypoints below this confidence are left out, as yolo_ros "
                       "does with its `threshold`", (0.0, 1.0)),
}
OUTPUT_TYPES = ("skeleton2d", "yolo")


def _descriptor(name: str, default, description: str, bounds) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=description)
    if bounds and isinstance(default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]))]
    elif bounds:
        d.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    return d


def camera_info_msg(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """A distortion-free pinhole CameraInfo (P = [K | 0], R = I)."""
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [float(v) for v in np.asarray(K).ravel()]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(v) for v in np.hstack([K, np.zeros((3, 1))]).ravel()]
    return info


def keypoints_msg(frame: ScenarioFrame, header: Header, width: int, height: int,
                  layout: str = "coco17") -> Skeleton2DArray:
    """The detector's output for one frame; missing keypoints are (0, 0) with confidence 0."""
    return Skeleton2DArray(header=header, width=width, height=height, layout=layout, skeletons=[
        Skeleton2D(id=pid, keypoints=[Keypoint2D(x=float(u), y=float(v), confidence=float(c))
                                      for (u, v), c in zip(uv, conf)])
        for pid, uv, conf in zip(frame.ids, frame.uv, frame.conf)])


def detections_msg(frame: ScenarioFrame, header: Header, threshold: float = 0.5):
    """The frame as yolo_ros publishes a YOLO-pose model's output with tracking: one "person"
    Detection per person, `id` the track id, the box around its keypoints, keypoints with their
    1-based COCO index, those below `threshold` left out."""
    from yolo_msgs.msg import Detection, DetectionArray, KeyPoint2D

    out = DetectionArray(header=header)
    for pid, uv, conf in zip(frame.ids, frame.uv, frame.conf):
        det = Detection(class_id=0, class_name="person", id=pid)
        kept = np.flatnonzero(conf >= threshold)
        det.keypoints.data = [KeyPoint2D(id=int(k) + 1, score=float(conf[k])) for k in kept]
        for kp, k in zip(det.keypoints.data, kept):
            kp.point.x, kp.point.y = float(uv[k, 0]), float(uv[k, 1])
        if kept.size:
            lo, hi = uv[kept].min(0), uv[kept].max(0)
            det.bbox.center.position.x, det.bbox.center.position.y = map(float, (lo + hi) / 2)
            det.bbox.size.x, det.bbox.size.y = map(float, hi - lo)
            det.score = float(conf[kept].mean())
        out.detections.append(det)
    return out


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def truth_msg(frame: ScenarioFrame, header: Header) -> Skeleton3DArray:
    """The true H36M-17 joints of the people in view, in the Skeleton3DArray the node publishes."""
    return Skeleton3DArray(header=header, lookahead=0, skeletons=[
        Skeleton3D(id=pid, joint_names=list(JOINT_NAMES), positions=[_point(q) for q in joints],
                   confidence=[1.0] * len(JOINT_NAMES), root_position=_point(joints[0]),
                   root_source=Skeleton3D.ROOT_SOURCE_REPROJECTION)
        for pid, joints in zip(frame.ids, frame.truth)])


class ScenarioPlayer(Node):
    def __init__(self, **kwargs):
        super().__init__("scenario_player", **kwargs)
        for name, (default, description, bounds) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(name, default, description, bounds))
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        self.scenario = Scenario(ScenarioConfig(num_people=p("num_people"), duration=p("duration"), fps=p("rate"),
                                                seed=p("seed"), noise=p("noise")))
        self.frame_id = p("frame_id")
        self.output_type, self.yolo_threshold = p("output_type"), p("yolo_threshold")
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, not '{self.output_type}'")
        # Reliable output matches both reliable and best-effort subscribers; the depth covers a slow peer.
        qos = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        if self.output_type == "yolo":
            from posemoe_ros.ros.yolo_input import detection_array_type
            self.pub_keypoints = self.create_publisher(detection_array_type(), "detections", qos)
        else:
            self.pub_keypoints = self.create_publisher(Skeleton2DArray, "keypoints_2d", qos)
        self.pub_truth = self.create_publisher(Skeleton3DArray, "skeletons_3d_truth", qos)
        self.stamps: list[int] = []              # stamp (ns) of each published frame, by frame index
        self.publish_times: dict[int, float] = {}  # stamp -> time.perf_counter() just before publishing
        self.done = False
        self._next = 0
        self._lead_in_ns = int(p("lead_in") * 1e9)
        self._wait_for = p("wait_for_subscribers")
        self._start_ns: int | None = None  # stamp of frame 0, set once the subscribers are there
        period = 1.0 / p("rate") if p("realtime") else 1e-4
        self._timer = self.create_timer(period, self._tick)

    def _tick(self):
        now = self.get_clock().now().nanoseconds
        if self._next >= self.scenario.num_frames:
            self.done = True
            self._timer.cancel()
            self.get_logger().info(f"played {len(self.stamps)} frames of {self.scenario.config.duration:g} s")
            return
        if self._start_ns is None and self.pub_keypoints.get_subscription_count() >= self._wait_for:
            self._start_ns = now + self._lead_in_ns
        if self._start_ns is None or now < self._start_ns:
            self.pub_info.publish(self._camera_info(now))
            return
        i = self._next
        frame = self.scenario.frame(i)
        stamp = self._start_ns + int(round(frame.t * 1e9))
        header = Header(stamp=stamp_msg(stamp), frame_id=self.frame_id)
        if self.output_type == "yolo":
            keypoints = detections_msg(frame, header, self.yolo_threshold)
        else:
            keypoints = keypoints_msg(frame, header, self.scenario.width, self.scenario.height, self.scenario.layout)
        self.pub_info.publish(self._camera_info(stamp))
        self.publish_times[stamp] = time.perf_counter()
        self.pub_keypoints.publish(keypoints)
        self.pub_truth.publish(truth_msg(frame, header))
        self.stamps.append(stamp)
        self._next += 1

    def _camera_info(self, stamp_ns: int) -> CameraInfo:
        s = self.scenario
        return camera_info_msg(s.K, s.width, s.height, Header(stamp=stamp_msg(stamp_ns), frame_id=self.frame_id))

    def frame_index(self, stamp_ns: int) -> int | None:
        """The scenario frame published with this stamp, if any."""
        if self._start_ns is None:
            return None
        i = int(round((stamp_ns - self._start_ns) * 1e-9 * self.scenario.config.fps))
        return i if 0 <= i < len(self.stamps) and self.stamps[i] == stamp_ns else None


def main(args=None) -> int:
    shutdown.install()  # SIGINT/SIGTERM end the spin below; the node, then the context, go in order
    shutdown.defer()  # from here a signal ends the spin below, and the node is torn down in order
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = ScenarioPlayer()
    shutdown.spin_node(node, until=lambda: node.done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
