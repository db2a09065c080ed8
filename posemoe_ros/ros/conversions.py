"""Messages <-> numpy: parse the node's inputs (with the reason when they are bad) and build its
outputs (skeletons, TF, markers). Plain functions, testable without a running node."""
from __future__ import annotations

import colorsys
import zlib
from collections import Counter

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Quaternion, TransformStamped
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from posemoe_ros.geometry.body_frames import body_frame, joint_offsets_in_body, rotation_to_quaternion
from posemoe_ros.msg import Skeleton3D, Skeleton3DArray
from posemoe_ros.pipeline.layouts import LAYOUTS
from posemoe_ros.skeleton import BONES, JOINT_NAMES


# Larger than any camera's side, px. uint32 sizes cannot be negative; a publisher's -1 arrives
# wrapped to 2**32 - 1, far above this bound, and is rejected like a zero size.
MAX_IMAGE_SIDE = 100_000


class InputError(ValueError):
    """A message the node cannot use; `reason` is the short key counted in diagnostics, `count`
    how many items (people, keypoints) it stands for."""

    def __init__(self, reason: str, detail: str, count: int = 1):
        super().__init__(detail)
        self.reason = reason
        self.count = count


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def stamp_msg(ns: int) -> Time:
    """The inverse of stamp_ns, for ns >= 0."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def checked_stamp_ns(stamp, now_ns: int = 0, max_ahead_s: float = 0.0) -> int:
    """A header stamp in ns, or InputError('invalid_stamp').

    Rejected: zero (an unset header), negative (int32 sec allows it, ROS time does not), nanosec
    not below 1e9, and more than max_ahead_s ahead of `now_ns` (skipped while now_ns is 0, as
    under sim time before /clock, or when max_ahead_s is 0). A stamp older than the previous
    one is valid: a looping bag; the lifter resets its tracks.
    """
    if stamp.nanosec >= 1_000_000_000:
        raise InputError("invalid_stamp", f"stamp nanosec {stamp.nanosec} is not below 1e9")
    ns = stamp_ns(stamp)
    if ns <= 0:
        raise InputError("invalid_stamp", f"stamp {stamp.sec}.{stamp.nanosec:09d} is "
                         + ("zero (header stamp not set?)" if ns == 0 else "negative"))
    if now_ns > 0 and max_ahead_s > 0 and ns - now_ns > max_ahead_s * 1e9:
        raise InputError("invalid_stamp", f"stamp {(ns - now_ns) * 1e-9:.0f} s ahead of this node's clock "
                         f"(max_stamp_ahead={max_ahead_s:g} s; clocks not synchronised?)")
    return ns


def duration_msg(seconds: float) -> Duration:
    ns = max(0, int(round(seconds * 1e9)))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def keypoints_from_msg(msg, max_people: int, dropped: Counter | None = None, check_size: bool = True):
    """Skeleton2DArray -> (ids list[str], uv (P,K,2) float64 pixels, conf (P,K) float64).

    Raises InputError for a message that cannot be lifted at all. Non-finite keypoints are
    kept (layout mapping marks them missing), so one bad joint never costs a whole person.
    With `dropped`, people whose keypoint count does not fit the layout are left out and counted
    there (the others are lifted); without it, or when nobody is left, they fail the message.
    `check_size` False skips the image-size check, for input that carries no size (yolo_input).
    """
    if msg.layout not in LAYOUTS:
        shown = msg.layout if len(msg.layout) <= 40 else msg.layout[:40] + "..."  # a junk string must not flood the log
        raise InputError("unknown_layout", f"unknown keypoint layout '{shown}' (known: {', '.join(LAYOUTS)})")
    if check_size and not (0 < msg.width <= MAX_IMAGE_SIDE and 0 < msg.height <= MAX_IMAGE_SIDE):
        raise InputError("bad_image_size", f"image size {msg.width}x{msg.height} is empty or above "
                         f"{MAX_IMAGE_SIDE} px (a negative size cast to uint32?)")
    if len(msg.skeletons) > max_people:
        raise InputError("too_many_people", f"{len(msg.skeletons)} people exceed max_people={max_people}")
    expected = LAYOUTS[msg.layout]
    people = msg.skeletons
    bad = [i for i, s in enumerate(people) if len(s.keypoints) != expected]
    if bad:
        detail = (f"layout '{msg.layout}' has {expected} keypoints, person {bad[0]} has "
                  f"{len(people[bad[0]].keypoints)} ({len(bad)} of {len(people)} people wrong)")
        if dropped is None or len(bad) == len(people):
            raise InputError("wrong_keypoint_count", detail, count=len(bad))
        dropped["wrong_keypoint_count"] += len(bad)
        skip = set(bad)
        people = [s for i, s in enumerate(people) if i not in skip]
    values = np.array([[(k.x, k.y, k.confidence) for k in s.keypoints] for s in people],
                      dtype=np.float64).reshape(len(people), expected, 3)
    return [s.id for s in people], values[..., :2], values[..., 2]


_DISTORTION_LENGTHS = {"plumb_bob": (5,), "rational_polynomial": (8,), "": (0, 4, 5, 8, 12, 14)}


def intrinsics_from_camera_info(msg):
    """CameraInfo -> (K (3,3), distortion (n,)). InputError for a K that cannot project."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError("bad_camera_info", f"camera intrinsics unusable (fx={K[0, 0]}, fy={K[1, 1]}); all-zero K "
                         "means an uncalibrated camera")
    if not np.array_equal(K[2], [0.0, 0.0, 1.0]):
        raise InputError("bad_camera_info", f"camera matrix K's last row is {K[2].tolist()}, not [0, 0, 1]")
    dist = np.asarray(msg.d, dtype=np.float64)
    model = msg.distortion_model
    if model not in _DISTORTION_LENGTHS:
        raise InputError("bad_camera_info", f"distortion model '{model}' not supported (plumb_bob, rational_polynomial)")
    if len(dist) not in _DISTORTION_LENGTHS[model] or not np.all(np.isfinite(dist)):
        raise InputError("bad_camera_info", f"{len(dist)} distortion coefficients do not fit model '{model}'")
    return K, dist


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _points(xyz: np.ndarray) -> list[Point]:
    """(N,3) -> N Points. One tolist() instead of 3N numpy scalar conversions: per frame the node
    builds hundreds of these (skeletons, markers), and their Python cost was a node's hot spot."""
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, np.float64).tolist()]


def skeleton_array_msg(header, people, latency_s: float, lookahead: int) -> Skeleton3DArray:
    """`people`: LiftedPerson-like objects (id, positions (17,3), root (3,), confidence (17,), root_source)."""
    return Skeleton3DArray(
        header=header, latency=duration_msg(latency_s), lookahead=lookahead,
        skeletons=[Skeleton3D(
            id=p.id, joint_names=list(JOINT_NAMES), positions=_points(p.positions),
            confidence=np.asarray(p.confidence, np.float64).tolist(), root_position=_point(p.root),
            root_source=int(p.root_source)) for p in people])


def _transform(header: Header, child: str, translation, rotation: Quaternion) -> TransformStamped:
    """translation: Python floats (x, y, z). header and rotation are shared, not copied: the
    transforms of one frame are built once, published and dropped, and a message's default
    sub-messages are the bulk of its construction cost (~180 transforms a frame for 10 people)."""
    t = TransformStamped()
    t.header, t.child_frame_id = header, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = translation
    t.transform.rotation = rotation
    return t


def body_frame_name(prefix: str, person_id: str) -> str:
    return f"{prefix}body_{person_id}"


def transforms(header, people, prefix: str) -> list[TransformStamped]:
    """REP-155: body_<id> at the hip midpoint (x out of the chest, z up the spine), child of the
    camera optical frame; <joint>_<id> per joint, child of body_<id>, identity orientation.
    Body frames, quaternions and joint offsets are computed for all people at once."""
    if not people:
        return []
    poses = np.stack([np.asarray(p.positions, np.float64) for p in people])          # (P,17,3)
    with np.errstate(invalid="ignore"):
        origins, rotations = body_frame(poses)                                        # (P,3), (P,3,3)
        ok = np.isfinite(rotations).all(axis=(1, 2))
        ok[ok] &= np.abs(np.linalg.det(rotations[ok]) - 1.0) < 1e-3
    if not ok.any():
        return []
    # a degenerate pose (hips and thorax together) has no body frame and is left out
    origins, rotations = origins[ok], rotations[ok]
    quaternions = rotation_to_quaternion(rotations).tolist()
    offsets = joint_offsets_in_body(poses[ok], origins, rotations).tolist()
    out, identity = [], Quaternion(w=1.0)
    camera = Header(stamp=header.stamp, frame_id=header.frame_id)
    for p, origin, (qx, qy, qz, qw), joints in zip((p for p, good in zip(people, ok) if good), origins.tolist(),
                                                   quaternions, offsets):
        body = body_frame_name(prefix, p.id)
        out.append(_transform(camera, body, origin, Quaternion(x=qx, y=qy, z=qz, w=qw)))
        parent = Header(stamp=header.stamp, frame_id=body)
        out.extend(_transform(parent, f"{prefix}{name}_{p.id}", offset, identity)
                   for name, offset in zip(JOINT_NAMES, joints))
    return out


def person_colour(person_id: str) -> ColorRGBA:
    """A stable, well-spread colour per id (golden-ratio hue walk over a hash of the id)."""
    hue = (zlib.crc32(person_id.encode()) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


_BONE_ENDS = [j for bone in BONES for j in bone]


def marker_array(header, people, lifetime_s: float, joint_radius: float = 0.05,
                 bone_width: float = 0.03) -> MarkerArray:
    """Per person: joints as one SPHERE_LIST and bones as one LINE_LIST, namespace person_<id>.
    The lifetime lets RViz drop people who leave without an explicit delete."""
    markers = []
    lifetime = duration_msg(lifetime_s)
    for p in people:
        colour = person_colour(p.id)
        joints = Marker(header=header, ns=f"person_{p.id}", id=0, type=Marker.SPHERE_LIST, action=Marker.ADD,
                        lifetime=lifetime, color=colour, points=_points(p.positions))
        joints.scale.x = joints.scale.y = joints.scale.z = joint_radius * 2
        bones = Marker(header=header, ns=f"person_{p.id}", id=1, type=Marker.LINE_LIST, action=Marker.ADD,
                       lifetime=lifetime, color=colour,
                       points=_points(np.asarray(p.positions)[_BONE_ENDS]))
        bones.scale.x = bone_width
        for m in (joints, bones):
            m.pose.orientation.w = 1.0
        markers += [joints, bones]
    return MarkerArray(markers=markers)


def fallback_intrinsics(fx: float, fy: float, cx: float, cy: float, width: int, height: int):
    """The intrinsics parameters as (K, no distortion); principal point defaults to the centre."""
    fy = fy if fy > 0 else fx
    cx = cx if cx >= 0 else (width - 1) / 2
    cy = cy if cy >= 0 else (height - 1) / 2
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), np.zeros(0)


# Bytes per pixel of the image encodings the node reads (the overlay's and the depth's).
IMAGE_ENCODINGS = {"mono8": 1, "8UC1": 1, "bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono16": 2, "16UC1": 2,
                   "32FC1": 4}
DEPTH_ENCODINGS = ("16UC1", "32FC1")


def image_error(msg, encodings=tuple(IMAGE_ENCODINGS), size: tuple[int, int] | None = None) -> str | None:
    """Why a sensor_msgs/Image cannot be read as it claims, or None. Checks the header fields
    against each other without decoding: encoding, size, step, data length; and with `size`
    (width, height), that the image has the keypoints' size (an aligned depth image must)."""
    if msg.encoding not in encodings:
        return f"encoding '{msg.encoding}' is not one of {', '.join(encodings)}"
    if not (0 < msg.width <= MAX_IMAGE_SIDE and 0 < msg.height <= MAX_IMAGE_SIDE):
        return f"image size {msg.width}x{msg.height} is empty or above {MAX_IMAGE_SIDE} px"
    if msg.step < msg.width * IMAGE_ENCODINGS[msg.encoding]:
        return f"step {msg.step} is below width {msg.width} x {IMAGE_ENCODINGS[msg.encoding]} bytes"
    if len(msg.data) != msg.step * msg.height:
        return f"{len(msg.data)} data bytes, not step {msg.step} x height {msg.height}"
    if size is not None and (msg.width, msg.height) != tuple(size):
        return f"image is {msg.width}x{msg.height}, the keypoints' image {size[0]}x{size[1]} (not aligned?)"
    return None


def depth_from_msg(msg, size: tuple[int, int] | None = None) -> np.ndarray:
    """Aligned depth image (16UC1 mm or 32FC1 m) -> (H, W) float32 metres, NaN where invalid.
    InputError('bad_depth_image') for an image that is malformed or, with `size`, not that size."""
    from posemoe_ros.geometry.root_translation import depth_to_metres
    from posemoe_ros.ros.fallbacks import image_to_numpy

    error = image_error(msg, DEPTH_ENCODINGS, size)
    if error:
        raise InputError("bad_depth_image", f"depth image unusable: {error}")
    try:
        return depth_to_metres(image_to_numpy(msg), msg.encoding)
    except (ValueError, TypeError) as exc:  # cv_bridge's CvBridgeError is a TypeError
        raise InputError("bad_depth_image", str(exc)) from exc
