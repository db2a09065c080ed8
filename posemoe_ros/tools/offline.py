"""Offline lifting without ROS: keypoint files in, 3D joints per person and frame out.

The loop feeds every frame to `Lifter.process` in order, exactly as the node does with each
keypoint message, so a file gives the 3D the node would publish for the same input. Readers
accept COCO-style keypoint JSON (as detectors and trackers write it) and npz; the accepted
formats are documented in docs/offline.md. Bags (MCAP) are read in ros/tools/offline_bag.py.
"""
from __future__ import annotations

import json
import math
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from posemoe_ros.geometry.camera import intrinsics_matrix
from posemoe_ros.pipeline.layouts import LAYOUTS
from posemoe_ros.pipeline.lifter import LiftedFrame, Lifter
from posemoe_ros.skeleton import JOINT_NAMES, NUM_JOINTS

DEFAULT_FPS = 30.0
DEFAULT_FRAME_ID = "camera_optical_frame"
LAYOUT_BY_COUNT = {17: "coco17", 18: "coco18", 25: "body25", 33: "mediapipe33"}  # COCO wins 17 over h36m17
_FRAME_KEYS = ("frame", "frame_id", "frame_index", "frame_idx", "image_id")
_TRACK_KEYS = ("track_id", "person_id", "track", "idx")  # idx: AlphaPose's track id
_PEOPLE_KEYS = ("instances", "people", "annotations", "detections", "predictions")


class OfflineError(ValueError):
    """An input the offline tools cannot use; the message is one line a user can act on."""


Camera = tuple[np.ndarray, np.ndarray]  # K (3,3), distortion (n,) (OpenCV order; empty = none)


@dataclass
class KeypointFrame:
    """The people of one image: what one Skeleton2DArray holds."""
    stamp_ns: int
    layout: str
    ids: list[str]  # "" = no track id (the lifter assigns one)
    uv: np.ndarray  # (P,K,2) pixels
    conf: np.ndarray  # (P,K)
    camera: Camera | None = None  # intrinsics in force for this frame; None: the sequence's


@dataclass
class KeypointSequence:
    frames: list[KeypointFrame]
    camera: Camera | None = None  # from the file, if it names one
    image_size: tuple[int, int] | None = None  # (width, height) pixels
    fps: float = DEFAULT_FPS
    frame_id: str = DEFAULT_FRAME_ID
    skipped: Counter = field(default_factory=Counter)  # reason -> frames a reader left out


@dataclass
class LiftResult:
    """3D per person and input frame; NaN where a person was not lifted in that frame."""
    stamps_ns: np.ndarray  # (F,) int64, the input frames' stamps
    ids: list[str]  # (N,) track ids, in order of first appearance
    joints: np.ndarray  # (N,F,17,3) float32, camera optical frame, metres
    root: np.ndarray  # (N,F,3) float32
    confidence: np.ndarray  # (N,F,17) float32
    lookahead: int
    warnings: Counter

    def tracks(self) -> dict[str, np.ndarray]:
        return {i: self.joints[n] for n, i in enumerate(self.ids)}


# ---- intrinsics --------------------------------------------------------------------------------
def camera_from_values(fx: float | None, fy: float | None = None, cx: float | None = None,
                       cy: float | None = None, image_size: tuple[int, int] | None = None) -> Camera:
    """Pinhole intrinsics from command-line style values: fy defaults to fx, the principal point
    to the image centre (as the node's fx/fy/cx/cy parameters)."""
    if fx is None or not fx > 0:
        raise OfflineError(f"focal length fx must be positive, got {fx}")
    if cx is None or cy is None:
        if image_size is None:
            raise OfflineError("principal point unknown: give cx and cy, or the image width and height")
        cx = (image_size[0] - 1) / 2 if cx is None else cx
        cy = (image_size[1] - 1) / 2 if cy is None else cy
    return intrinsics_matrix(fx, fy if fy else fx, cx, cy), np.zeros(0)


def _camera_from_json(camera: dict, image_size) -> Camera:
    if "K" in camera or "k" in camera:
        K = np.asarray(camera.get("K", camera.get("k")), dtype=np.float64)
        if K.size != 9 or not np.all(np.isfinite(K)) or K.reshape(3, 3)[0, 0] <= 0:
            raise OfflineError(f"camera K must be 9 finite numbers with fx > 0, got {K.tolist()}")
        dist = np.asarray(camera.get("dist", camera.get("D", camera.get("d", []))), dtype=np.float64).ravel()
        return K.reshape(3, 3), dist
    if "fx" not in camera:
        raise OfflineError(f"camera needs 'K' (3x3) or 'fx' (with optional fy, cx, cy); got keys {sorted(camera)}")
    return camera_from_values(camera.get("fx"), camera.get("fy"), camera.get("cx"), camera.get("cy"), image_size)


# ---- frames ------------------------------------------------------------------------------------
def check_frame(frame: KeypointFrame) -> str | None:
    """The reason a frame cannot be lifted (the node's rejection reasons), or None."""
    if frame.layout not in LAYOUTS:
        return "unknown_layout"
    if frame.uv.shape != (len(frame.ids), LAYOUTS[frame.layout], 2) or frame.conf.shape != frame.uv.shape[:2]:
        return "wrong_keypoint_count"
    return None


def _check_layout(layout: str | None, source: str) -> str:
    if layout not in LAYOUTS:
        raise OfflineError(f"{source}: unknown keypoint layout '{layout}'; known layouts: {', '.join(LAYOUTS)}")
    return layout


def _layout_for(count: int, named: str | None, source: str) -> str:
    if named is not None:
        layout = _check_layout(named, source)
        if LAYOUTS[layout] != count:
            raise OfflineError(f"{source}: layout '{layout}' has {LAYOUTS[layout]} keypoints, the file has {count}")
        return layout
    if count not in LAYOUT_BY_COUNT:
        raise OfflineError(f"{source}: {count} keypoints per person match no layout; give --layout "
                           f"({', '.join(f'{k} {v}' for k, v in LAYOUTS.items())})")
    return LAYOUT_BY_COUNT[count]


# ---- the lifting loop --------------------------------------------------------------------------
FrameCallback = Callable[[KeypointFrame, LiftedFrame, float], None]


def lift_frames(frames: Iterable[KeypointFrame], lifter: Lifter, camera: Camera | None,
                on_frame: FrameCallback | None = None, progress: bool = False, total: int | None = None,
                skipped: Counter | None = None) -> LiftResult:
    """Lift every frame in order, as the node lifts each keypoint message.

    `camera` serves frames without their own. `on_frame(input, lifted, seconds)` sees every
    lifted output (people may be [] but never None), e.g. to write it to a bag. Frames the node
    would reject are skipped and counted by reason, like the node's diagnostics.
    """
    from tqdm import tqdm

    stamps, rows = [], []  # rows: (input index of the lifted frame, LiftedPerson)
    warnings = Counter(skipped or {})
    for frame in tqdm(frames, total=total, disable=not progress, unit="frame", desc="lifting", mininterval=1.0):
        reason = check_frame(frame)
        cam = frame.camera if frame.camera is not None else camera
        if reason is None and cam is None:
            reason = "no_camera_info"
        if reason:
            warnings[reason] += 1
            continue
        stamps.append(frame.stamp_ns)
        start = time.perf_counter()
        lifted = lifter.process(frame.stamp_ns, frame.layout, list(frame.ids), frame.uv, frame.conf, *cam)
        warnings.update(lifted.warnings)
        if lifted.people is None:  # windows still filling the lookahead: the node publishes nothing
            continue
        rows += [(len(stamps) - 1 - lifted.lookahead, p) for p in lifted.people]
        if on_frame is not None:
            on_frame(frame, lifted, time.perf_counter() - start)
    return _collect(np.asarray(stamps, np.int64), rows, lifter.config.lookahead, warnings)


def _collect(stamps: np.ndarray, rows, lookahead: int, warnings: Counter) -> LiftResult:
    ids = list(dict.fromkeys(p.id for _, p in rows))
    index = {i: n for n, i in enumerate(ids)}
    N, F = len(ids), len(stamps)
    joints = np.full((N, F, NUM_JOINTS, 3), np.nan, np.float32)
    root = np.full((N, F, 3), np.nan, np.float32)
    conf = np.zeros((N, F, NUM_JOINTS), np.float32)
    for f, p in rows:
        n = index[p.id]
        joints[n, f], root[n, f], conf[n, f] = p.positions, p.root, p.confidence
    return LiftResult(stamps, ids, joints, root, conf, lookahead, warnings)


# ---- readers -----------------------------------------------------------------------------------
def read_keypoints(path, layout: str | None = None, fps: float | None = None) -> KeypointSequence:
    """A keypoint file (.json or .npz, formats in docs/offline.md) -> frames in time order."""
    path = Path(path)
    if not path.is_file():
        raise OfflineError(f"input not found: {path}")
    if layout is not None:
        _check_layout(layout, "--layout")
    readers = {".json": read_coco_json, ".npz": read_npz}
    if path.suffix.lower() not in readers:
        raise OfflineError(f"{path}: unknown input type '{path.suffix}' (expected .mcap, .json or .npz)")
    return readers[path.suffix.lower()](path, layout, fps)


def _track_id(record: dict) -> str:
    for key in _TRACK_KEYS:
        value = record.get(key)
        if value is not None and value != "":
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return ""


def _person_keypoints(record: dict, source: str) -> np.ndarray:
    """One person's keypoints -> (K,3) x, y, third value (visibility flag or score)."""
    values = record.get("keypoints", record.get("pose_keypoints_2d"))
    if values is None:
        raise OfflineError(f"{source}: a person has no 'keypoints'")
    try:
        kp = np.asarray(values, dtype=np.float64)
        if kp.ndim == 1:
            kp = kp.reshape(-1, 3)  # COCO: flat [x1, y1, v1, x2, ...]
        if kp.ndim != 2 or kp.shape[1] not in (2, 3):
            raise ValueError(kp.shape)
        if "keypoint_scores" in record:  # MMPose: [[x, y], ...] plus scores
            kp = np.concatenate([kp[:, :2], np.asarray(record["keypoint_scores"], np.float64).reshape(-1, 1)], 1)
        elif kp.shape[1] == 2:
            kp = np.concatenate([kp, np.ones((len(kp), 1))], 1)
    except (ValueError, TypeError):
        raise OfflineError(f"{source}: keypoints must be [x, y, v] * K or [[x, y(, score)], ...]") from None
    return kp


def _json_people(data, source: str) -> tuple[list[tuple[object, dict]], list | None]:
    """(frame key, person record) pairs and the COCO 'images' list, from any accepted layout."""
    if isinstance(data, dict) and "annotations" in data:  # COCO dataset / PoseTrack
        records, images = data["annotations"], data.get("images")
    elif isinstance(data, dict) and "frames" in data:
        records, images = data["frames"], None
    elif isinstance(data, list):
        records, images = data, None
    else:
        raise OfflineError(f"{source}: expected a list of detections or a dict with 'annotations' or 'frames'")
    people = []
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise OfflineError(f"{source}: entry {n} is not an object")
        nested = next((k for k in _PEOPLE_KEYS if isinstance(record.get(k), list)), None)
        frame = next((record[k] for k in _FRAME_KEYS if k in record), None)
        if nested:  # one entry per frame: {"frame_id": 3, "instances": [...]}
            frame = n if frame is None else frame
            people += [(frame, p) for p in record[nested]] or [(frame, None)]
        else:  # one entry per detection: {"image_id": 3, "track_id": 1, "keypoints": [...]}
            if frame is None:
                raise OfflineError(f"{source}: detection {n} has none of {', '.join(_FRAME_KEYS)}")
            people.append((frame, record))
    return people, images


def _frame_order(keys: list, images: list | None, source: str) -> dict:
    """frame key -> frame number (from 0): the 'images' order, else integers as numbered (gaps
    become empty frames), else order of first appearance."""
    if images:
        return {img["id"]: n for n, img in enumerate(images) if isinstance(img, dict) and "id" in img}
    unique = list(dict.fromkeys(keys))
    try:
        numbers = [int(k) for k in unique]
    except (TypeError, ValueError):
        return {k: n for n, k in enumerate(unique)}
    if not numbers:
        return {}
    if max(numbers) - min(numbers) > 10 * len(numbers) + 10_000:
        raise OfflineError(f"{source}: frame numbers {min(numbers)}..{max(numbers)} are too sparse for "
                           f"{len(numbers)} frames")
    return {k: int(k) - min(numbers) for k in unique}


def read_coco_json(path, layout: str | None = None, fps: float | None = None) -> KeypointSequence:
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OfflineError(f"{source}: not valid JSON ({exc})") from None
    meta = data if isinstance(data, dict) else {}
    people, images = _json_people(data, source)
    order = _frame_order([k for k, _ in people], images, source)
    fps = float(fps or meta.get("fps") or DEFAULT_FPS)
    size = _image_size(meta, images)
    layout = layout or meta.get("layout")

    skipped = Counter(unknown_image=sum(k not in order for k, r in people if r is not None))
    kps = [(order[k], _track_id(r), _person_keypoints(r, source)) for k, r in people if r is not None
           and k in order]
    counts = {len(kp) for _, _, kp in kps}
    if len(counts) > 1:
        raise OfflineError(f"{source}: people have different keypoint counts {sorted(counts)}")
    layout = _layout_for(counts.pop(), layout, source) if counts else _check_layout(layout or "coco17", source)
    third = np.concatenate([kp[:, 2] for _, _, kp in kps]) if kps else np.zeros(0)
    flags = bool(third.size) and np.all(np.isin(third, (0, 1, 2))) and np.any(third == 2)  # COCO v, not scores

    K = LAYOUTS[layout]
    frames = [KeypointFrame(round(n * 1e9 / fps), layout, [], np.zeros((0, K, 2)), np.zeros((0, K)))
              for n in range(max(order.values(), default=-1) + 1)]
    for n, track, kp in kps:
        conf = (kp[:, 2] > 0).astype(np.float64) if flags else np.clip(np.nan_to_num(kp[:, 2]), 0.0, 1.0)
        f = frames[n]
        f.ids.append(track)
        f.uv, f.conf = np.concatenate([f.uv, kp[None, :, :2]]), np.concatenate([f.conf, conf[None]])
    camera_meta = meta.get("camera", meta.get("intrinsics"))
    camera = _camera_from_json(camera_meta, size) if isinstance(camera_meta, dict) and camera_meta else None
    return KeypointSequence(frames, camera, size, fps, meta.get("frame_id", DEFAULT_FRAME_ID), +skipped)


def _image_size(meta: dict, images: list | None) -> tuple[int, int] | None:
    for holder in (meta, meta.get("camera") or {}, (images or [{}])[0]):
        if isinstance(holder, dict) and holder.get("width") and holder.get("height"):
            return int(holder["width"]), int(holder["height"])
    if "image_size" in meta:
        return int(meta["image_size"][0]), int(meta["image_size"][1])
    return None


def read_npz(path, layout: str | None = None, fps: float | None = None) -> KeypointSequence:
    source = str(path)
    if not zipfile.is_zipfile(path):
        raise OfflineError(f"{source}: not an npz file (numpy.savez writes a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = dict(npz)
    except (ValueError, OSError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        raise OfflineError(f"{source}: not a readable npz ({exc})") from None
    if "keypoints" in data:
        kp = np.asarray(data["keypoints"], np.float64)
        if kp.ndim != 4 or kp.shape[-1] != 3:
            raise OfflineError(f"{source}: 'keypoints' must be (frames, people, K, 3), got {kp.shape}")
        uv, conf = kp[..., :2], kp[..., 2]
    elif "uv" in data:
        uv = np.asarray(data["uv"], np.float64)
        if uv.ndim != 4 or uv.shape[-1] != 2:
            raise OfflineError(f"{source}: 'uv' must be (frames, people, K, 2), got {uv.shape}")
        conf = np.asarray(data["conf"], np.float64) if "conf" in data else np.isfinite(uv).all(-1).astype(float)
        if conf.shape != uv.shape[:3]:
            raise OfflineError(f"{source}: 'conf' {conf.shape} does not match 'uv' {uv.shape}")
    else:
        raise OfflineError(f"{source}: needs 'keypoints' (F,P,K,3) or 'uv' (F,P,K,2); has {', '.join(data)}")
    F, P, count = uv.shape[:3]
    layout = _layout_for(count, layout or (str(data["layout"]) if "layout" in data else None), source)
    ids = [str(i) for i in data["ids"]] if "ids" in data else [str(p) for p in range(P)]
    if len(ids) != P:
        raise OfflineError(f"{source}: {len(ids)} ids for {P} people")
    fps = float(fps or (data["fps"] if "fps" in data else DEFAULT_FPS))
    stamps = (np.asarray(data["stamps_ns"], np.int64) if "stamps_ns" in data
              else np.round(np.arange(F) * 1e9 / fps).astype(np.int64))
    if stamps.shape != (F,):
        raise OfflineError(f"{source}: 'stamps_ns' {stamps.shape} does not match {F} frames")
    present = (np.nan_to_num(conf) > 0).any(-1) & np.isfinite(uv).any((-1, -2))  # (F,P)
    frames = [KeypointFrame(int(stamps[f]), layout, [ids[p] for p in np.flatnonzero(present[f])],
                            uv[f, present[f]], conf[f, present[f]]) for f in range(F)]
    size = tuple(int(v) for v in data["image_size"]) if "image_size" in data else None
    camera = None
    if "K" in data:
        camera = _camera_from_json({"K": data["K"], "dist": data.get("dist", np.zeros(0))}, size)
    return KeypointSequence(frames, camera, size, fps, str(data.get("frame_id", DEFAULT_FRAME_ID)))


# ---- writers -----------------------------------------------------------------------------------
def write_npz(path, result: LiftResult, camera: Camera | None, image_size, fps: float, frame_id: str):
    """Keys: stamps_ns (F,), ids (N,), joint_names (17,), joints (N,F,17,3) and root (N,F,3)
    metres in the camera optical frame (NaN: not lifted), confidence (N,F,17), K, dist,
    image_size (w,h), fps, lookahead, frame_id."""
    K, dist = camera if camera is not None else (np.full((3, 3), np.nan), np.zeros(0))
    np.savez_compressed(path, stamps_ns=result.stamps_ns, ids=np.array(result.ids, dtype=str),
                        joint_names=np.array(JOINT_NAMES), joints=result.joints, root=result.root,
                        confidence=result.confidence, K=K, dist=dist,
                        image_size=np.array(image_size or (0, 0)), fps=fps, lookahead=result.lookahead,
                        frame_id=frame_id)


def _rounded(a: np.ndarray, digits: int) -> list:
    return np.round(a.astype(np.float64), digits).tolist()


def write_json(path, result: LiftResult, camera: Camera | None, image_size, fps: float, frame_id: str):
    """One entry per input frame with the people lifted there; positions in metres (10 µm)."""
    frames = []
    for f, stamp in enumerate(result.stamps_ns):
        people = [{"id": i, "positions": _rounded(result.joints[n, f], 5), "root": _rounded(result.root[n, f], 5),
                   "confidence": _rounded(result.confidence[n, f], 3)}
                  for n, i in enumerate(result.ids) if not math.isnan(result.root[n, f, 0])]
        frames.append({"frame": f, "stamp_ns": int(stamp), "people": people})
    doc = {"joint_names": list(JOINT_NAMES), "frame_id": frame_id, "units": "m", "fps": fps,
           "K": camera[0].tolist() if camera is not None else None, "image_size": list(image_size or (0, 0)),
           "lookahead": result.lookahead, "ids": result.ids, "frames": frames}
    Path(path).write_text(json.dumps(doc, separators=(",", ":")))
