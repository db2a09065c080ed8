"""posemoe-lift's bag side: keypoint frames out of a ROS 2 MCAP bag, and the lifted 3D back into
one (skeletons, markers and TF, as the node publishes them, so the bag replays into RViz)."""
from __future__ import annotations

from collections import Counter

import numpy as np
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from posemoe_ros.pipeline.lifter import LiftedFrame
from posemoe_ros.ros import conversions
from posemoe_ros.ros.conversions import InputError
from posemoe_ros.ros.tools.mcap_io import BagError, McapWriter, read_messages, topic_types
from posemoe_ros.tools.offline import DEFAULT_FPS, DEFAULT_FRAME_ID, KeypointFrame, KeypointSequence, OfflineError

KEYPOINTS_TYPE = "posemoe_ros/msg/Skeleton2DArray"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
MAX_PEOPLE = 64  # the node's default max_people
# The node's output topics (its relative names in the root namespace).
SKELETONS_TOPIC, MARKERS_TOPIC, TF_TOPIC = "/skeletons_3d", "/skeleton_markers", "/tf"


def _check_topic(types: dict[str, str], topic: str, expected: str, path) -> None:
    if types.get(topic) == expected:
        return
    available = ", ".join(f"{t} ({types[t]})" for t in sorted(types)) or "none"
    problem = "has no topic" if topic not in types else f"carries {types[topic]} on"
    raise OfflineError(f"{path} {problem} {topic} (expected {expected}); topics in the bag: {available}")


def read_bag(path, keypoints_topic: str = "/keypoints_2d", camera_info_topic: str = "/camera_info",
             need_camera_info: bool = True) -> KeypointSequence:
    """Every keypoint message of the bag, in log-time order, with the CameraInfo in force.

    Messages the node would reject are left out and counted by the node's reasons. Frames before
    the first CameraInfo use the first one (offline, the whole bag is known)."""
    try:
        types = topic_types(path)
    except BagError as exc:
        raise OfflineError(str(exc)) from None
    _check_topic(types, keypoints_topic, KEYPOINTS_TYPE, path)
    if need_camera_info:
        _check_topic(types, camera_info_topic, CAMERA_INFO_TYPE, path)
    frames, skipped, camera, first = [], Counter(), None, None
    try:
        for topic, msg, _ in read_messages(path, [keypoints_topic, camera_info_topic]):
            try:
                if topic == camera_info_topic:
                    camera = conversions.intrinsics_from_camera_info(msg)
                    continue
                # As the node: a bad stamp fails the message, a misfit person only costs itself.
                stamp = conversions.checked_stamp_ns(msg.header.stamp)
                ids, uv, conf = conversions.keypoints_from_msg(msg, MAX_PEOPLE, skipped)
            except InputError as exc:
                skipped[exc.reason] += 1
                continue
            if first is None:
                first = msg
            frames.append(KeypointFrame(stamp, msg.layout, ids, uv, conf, camera))
    except BagError as exc:
        raise OfflineError(str(exc)) from None
    if not frames:
        detail = ", ".join(f"{n} {r}" for r, n in skipped.items()) or "none in the bag"
        raise OfflineError(f"{path}: no usable keypoint messages on {keypoints_topic} ({detail})")
    first_camera = next((f.camera for f in frames if f.camera is not None), None)
    for f in frames:
        f.camera = f.camera if f.camera is not None else first_camera
    steps = np.diff([f.stamp_ns for f in frames])
    fps = 1e9 / float(np.median(steps)) if len(steps) and np.median(steps) > 0 else DEFAULT_FPS
    return KeypointSequence(frames, first_camera, (first.width, first.height), fps, first.header.frame_id, skipped)


class SkeletonBagWriter:
    """An `on_frame` callback for offline.lift_frames: writes what the node would publish."""

    def __init__(self, path, frame_id: str, marker_lifetime: float = 0.5, tf_prefix: str = ""):
        self.frame_id = frame_id or DEFAULT_FRAME_ID
        self.marker_lifetime, self.tf_prefix = marker_lifetime, tf_prefix
        self.writer = McapWriter(path)

    def __call__(self, frame: KeypointFrame, lifted: LiftedFrame, latency_s: float):
        header = Header(stamp=conversions.stamp_msg(lifted.stamp_ns), frame_id=self.frame_id)
        log_time = frame.stamp_ns  # when the node would publish it: on the newest input's arrival
        people = lifted.people
        self.writer.write(SKELETONS_TOPIC, conversions.skeleton_array_msg(header, people, latency_s, lifted.lookahead),
                          log_time)
        if people:
            self.writer.write(TF_TOPIC, TFMessage(transforms=conversions.transforms(header, people, self.tf_prefix)),
                              log_time)
        self.writer.write(MARKERS_TOPIC, conversions.marker_array(header, people, self.marker_lifetime), log_time)

    def close(self):
        self.writer.close()
