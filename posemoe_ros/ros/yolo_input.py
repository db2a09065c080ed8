"""yolo_ros's output as the lift node's input: yolo_msgs/DetectionArray -> Skeleton2DArray.

yolo_ros (github.com/mgonzs13/yolo_ros) with a YOLO-pose model publishes, per image, one
Detection per person: `id` the tracker's id (empty without its tracking node), `keypoints.data[]`
with `id` the 1-based COCO-17 index, `point` in pixels and `score`; keypoints below YOLO's
threshold are left out. The header is the image's. The message carries no image size: it is
taken from CameraInfo. After this conversion everything is the Skeleton2DArray path.

yolo_msgs is optional: imported only when input_type is yolo (and by the scenario player's yolo
output). Plain functions, testable without a node.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray
from posemoe_ros.pipeline.layouts import LAYOUTS
from posemoe_ros.ros.conversions import InputError

LAYOUT = "coco17"  # YOLO-pose's keypoints
NUM_KEYPOINTS = LAYOUTS[LAYOUT]
PERSON_CLASS = "person"  # the class name YOLO-pose (COCO) gives people
# Keypoint2D's float32 fields refuse finite values beyond this bound (rosidl's range check):
# larger float64 coordinates become +-inf, i.e. non-finite, counted by the lifter as such.
_FLOAT32_BOUND = 3.402823466e38

MISSING_YOLO_MSGS = ("input_type 'yolo' needs the yolo_msgs package, which comes with yolo_ros: build "
                     "github.com/mgonzs13/yolo_ros in your workspace and source it (or use input_type "
                     "'skeleton2d')")


def detection_array_type():
    """yolo_msgs/DetectionArray; ImportError saying what to install when yolo_msgs is missing."""
    try:
        from yolo_msgs.msg import DetectionArray
    except ImportError as exc:
        raise ImportError(f"{MISSING_YOLO_MSGS} ({exc})") from exc
    return DetectionArray


def keypoint_values(keypoints, dropped: Counter) -> np.ndarray:
    """A detection's keypoints.data -> (17, 3) float32 x, y, score in COCO-17 order; the ones YOLO
    left out are (0, 0, 0), missing. Ids outside 1..17 (`bad_keypoint_id`) and repeats of an id
    (`duplicate_keypoint_id`; the first one is kept) are left out and counted in `dropped`.
    Non-finite values are kept: the lifter marks them missing and counts them."""
    values = np.zeros((NUM_KEYPOINTS, 3), np.float64)
    seen = np.zeros(NUM_KEYPOINTS, bool)
    for kp in keypoints:
        k = kp.id - 1
        if not 0 <= k < NUM_KEYPOINTS:
            dropped["bad_keypoint_id"] += 1
        elif seen[k]:
            dropped["duplicate_keypoint_id"] += 1
        else:
            seen[k] = True
            values[k] = (kp.point.x, kp.point.y, kp.score)
    with np.errstate(invalid="ignore"):
        values = np.where(np.abs(values) > _FLOAT32_BOUND, np.copysign(np.inf, values), values)
    return values.astype(np.float32)


def skeletons_from_detections(msg, image_size: tuple[int, int] | None, max_people: int,
                              dropped: Counter) -> Skeleton2DArray:
    """DetectionArray -> Skeleton2DArray (coco17) with the same header; width and height from
    `image_size` (CameraInfo's), 0 when unknown.

    Detections of another class (`not_a_person`) or without keypoints (`no_keypoints`) are left
    out and counted in `dropped`; InputError('too_many_people') when more than max_people remain,
    checked before any keypoint is read (a 1,000-detection message costs little).
    """
    people = []
    for det in msg.detections:
        if det.class_name != PERSON_CLASS:
            dropped["not_a_person"] += 1
        elif not det.keypoints.data:
            dropped["no_keypoints"] += 1
        else:
            people.append(det)
    if len(people) > max_people:
        raise InputError("too_many_people", f"{len(people)} people exceed max_people={max_people}")
    width, height = image_size or (0, 0)
    out = Skeleton2DArray(header=msg.header, width=width, height=height, layout=LAYOUT)
    for det in people:
        values = keypoint_values(det.keypoints.data, dropped).tolist()
        out.skeletons.append(Skeleton2D(id=det.id, keypoints=[Keypoint2D(x=x, y=y, confidence=c)
                                                              for x, y, c in values]))
    return out


# What the node's throttled warning says for each reason counted here ("<count> <text>").
REASONS = {
    "not_a_person": f"yolo detection(s) of another class than '{PERSON_CLASS}' ignored",
    "no_keypoints": "yolo person detection(s) without keypoints ignored (not a -pose model?)",
    "bad_keypoint_id": f"yolo keypoint(s) with an id outside 1..{NUM_KEYPOINTS} ignored",
    "duplicate_keypoint_id": "yolo keypoint(s) repeating an id in one detection ignored (the first is kept)",
}
