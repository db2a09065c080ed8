"""One camera's lifting pipeline, frame by frame, without ROS.

keypoints (any layout, pixels) -> H36M-17 joints -> undistorted normalised coordinates ->
per-track history -> each frame turned onto the optical axis -> one batched model call ->
root-relative 3D -> absolute 3D via the root translation (reprojection fit, or the depth image).
The ROS node and the offline tools call `Lifter.process` once per keypoint message.

A streaming model (PoseMoE, entangled) lifts each person's new frame with one step from the
track's cached keys and values (models/streaming.py): the cost of one frame, not of a window. A
full-window model (the TCN) runs over each track's last T frames.
"""
from __future__ import annotations

import os
from collections import Counter, deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from posemoe_ros.geometry.camera import normalized_to_pixels, pixels_to_normalized
from posemoe_ros.geometry.optical_axis import rotate_points_back, view_on_axis
from posemoe_ros.geometry.root_translation import robust_torso_depth, solve_root_translation
from posemoe_ros.geometry.stature import body_height_error, scale_to_stature
from posemoe_ros.models.export import OnnxLifter, OnnxStep, cached_onnx
from posemoe_ros.models.streaming import StreamingStep, cache_shape, is_streaming
from posemoe_ros.models.weights import load_model
from posemoe_ros.pipeline.layouts import to_h36m
from posemoe_ros.pipeline.tracking import TrackAssigner, TrackManager

DEFAULT_WEIGHTS = "posemoe_s.safetensors"
MIN_CONFIDENT_JOINTS = 4  # fewer cannot pin down a root translation
# Normalised coordinates beyond this (84 deg off the optical axis) are in no pinhole camera's view:
# such keypoints (garbage like 1e30 px) are marked missing instead of reaching the model.
MAX_VIEW_TAN = 10.0
BACKENDS = ("onnxruntime", "torch")
# onnxruntime with num_threads 0: one single-threaded session per core (at most 2), each lifting a
# share of the people; faster than intra-op threads for these tiny ops (docs/performance.md).
ORT_DEFAULT_PARALLEL = min(2, os.cpu_count() or 1)
# The streaming step on onnxruntime: up to this many people per session run on sessions with the
# batch axis fixed to their count (models/export.FixedBatchSessions): faster, and deterministic.
# Sizes 1-4 are built with the engine (~0.2 s each), larger ones on first sight.
FIXED_BATCHES = 16


class ModelLoadError(RuntimeError):
    """The weights cannot be loaded; the message is one line a user can act on."""


def default_weights_path() -> Path:
    return Path(str(resources.files("posemoe_ros") / "weights" / DEFAULT_WEIGHTS))


@dataclass(frozen=True)
class LifterConfig:
    lookahead: int = 0  # 0 = causal; k lifts the frame k steps before the newest
    min_confidence: float = 0.3
    # Stature (m) each skeleton is scaled to before its root is solved; 0 keeps the model's own size.
    # Monocular depth scales with it (posemoe_ros/geometry/stature.py): set it to the people the robot meets.
    body_height: float = 1.70
    track_timeout: float = 1.0  # s
    max_gap: float = 0.5  # s
    match_distance: float = 0.5  # person heights
    max_tracks: int = 256
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # 0 = the backend's default (torch: all cores; onnxruntime: ORT_DEFAULT_PARALLEL)
    # CPU inference engine. onnxruntime (the CPU build in requirements.txt) is the faster on CPU
    # (docs/performance.md); on CUDA the lifter always runs torch in fp16 and says so in `backend`.
    backend: str = "onnxruntime"  # onnxruntime | torch


@dataclass
class LiftedPerson:
    id: str
    positions: np.ndarray  # (17, 3) camera optical frame, metres
    root: np.ndarray  # (3,) pelvis, camera optical frame, metres
    confidence: np.ndarray  # (17,) detector confidence of each joint's source keypoints
    root_source: int  # 0 reprojection fit, 1 depth image (Skeleton3D.ROOT_SOURCE_*)
    keypoints_uv: np.ndarray  # (17, 2) the input keypoints mapped to the model's joints, pixels


@dataclass
class LiftedFrame:
    stamp_ns: int  # stamp of the lifted frame (the input stamp `lookahead` messages back)
    people: list[LiftedPerson] | None  # None: nothing to publish yet (windows filling the lookahead)
    lookahead: int
    warnings: Counter = field(default_factory=Counter)  # reason -> count of ignored items


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


class Lifter:
    def __init__(self, model: torch.nn.Module, config: LifterConfig, description: str = ""):
        self.model = model.eval()
        self.streaming = is_streaming(model)
        self.num_frames = model.config.num_frames
        # lookahead k: a streaming model's last layer answers for frame t-k (trained for 0..max_lookahead);
        # a full-window model takes frame T-1-k of its window
        self.max_lookahead = model.config.max_lookahead if self.streaming else self.num_frames - 1
        self.model_description = description or type(model).__name__
        self.config = None
        self.backend = None  # the engine actually running: "torch" or "onnxruntime"
        self._run = None  # full window: (P,T,17,3) -> same; streaming: (x, past_kv, ages, k) -> (pose, new_kv)
        self.update_config(config)
        self._input_stamps: deque[int] = deque(maxlen=self.num_frames)

    @classmethod
    def from_weights(cls, path: str | Path | None, config: LifterConfig) -> "Lifter":
        path = Path(path) if path else default_weights_path()
        if not path.is_file():
            raise ModelLoadError(f"weights file not found: {path}")
        try:
            model = load_model(path)
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load weights {path}: {exc}") from None
        kind = "streaming, W" if is_streaming(model) else "T"
        description = (f"{path.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
                       f"{kind}={model.config.num_frames})")
        try:
            return cls(model, config, description)
        except (ValueError, RuntimeError) as exc:  # settings the model cannot meet, a backend that fails
            raise ModelLoadError(f"cannot run {path.name}: {exc}") from None

    # ---- configuration ------------------------------------------------------------------------
    def update_config(self, config: LifterConfig):
        """Apply new settings at run time; ValueError or RuntimeError (nothing changed) if they cannot be met.

        A new backend, device or thread count rebuilds the engine (an onnxruntime switch exports the
        model once per weights, cached on disk); the tracks are kept.
        """
        if not 0 <= config.lookahead <= self.max_lookahead:
            raise ValueError(f"lookahead {config.lookahead} is beyond what the model was trained for "
                             f"(0 to {self.max_lookahead} frames)")
        if config.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not '{config.backend}'")
        if reason := body_height_error(config.body_height):
            raise ValueError(reason)
        device = resolve_device(config.device)
        old = self.config
        if old is None or (config.device, config.backend, config.num_threads) != (
                old.device, old.backend, old.num_threads):
            self._set_engine(device, config.backend, config.num_threads)
        if self.config is None:
            self.tracks = TrackManager(self.num_frames, timeout=config.track_timeout, max_gap=config.max_gap,
                                       max_tracks=config.max_tracks,
                                       cache_shape=cache_shape(self.model) if self.streaming else None)
            self.assigner = TrackAssigner(max_distance=config.match_distance, timeout=config.track_timeout,
                                          max_tracks=config.max_tracks)
        else:
            self.tracks.timeout, self.tracks.max_gap = config.track_timeout, config.max_gap
            self.tracks.max_tracks = config.max_tracks
            self.assigner.max_distance = config.match_distance
            self.assigner.timeout, self.assigner.max_tracks = config.track_timeout, config.max_tracks
        self.config = config

    def _set_engine(self, device: torch.device, backend: str, num_threads: int):
        """Move the model and (re)build the forward function; on failure nothing changes."""
        # fp16 halves latency on CUDA; on CPU fp32 is both faster and exact.
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        if device.type == "cuda" or backend == "torch":
            backend, run = "torch", self._torch_step if self.streaming else self._torch_forward
        else:  # export once per weights (cached on disk), then one session per thread setting
            self.model.to("cpu", torch.float32)
            # The streaming step's ops are too small to share: one single-threaded session beat two
            # batch-parallel ones and two intra-op threads for 1-10 people (docs/performance.md).
            runner, default = (OnnxStep, 1) if self.streaming else (OnnxLifter, ORT_DEFAULT_PARALLEL)
            try:
                extra = dict(fixed_batches=FIXED_BATCHES) if self.streaming else {}
                run = runner(cached_onnx(self.model), batch_parallel=num_threads or default, **extra)
            except (ImportError, OSError, RuntimeError, ValueError) as exc:
                if self._run is not None:
                    self.model.to(self.device, self.dtype)  # back where the running engine expects it
                raise RuntimeError(f"onnxruntime backend unavailable ({exc}); use backend torch") from exc
            backend = "onnxruntime"
        self.model.to(device, dtype)
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.device, self.dtype, self.backend, self._run = device, dtype, backend, run

    @property
    def num_tracks(self) -> int:
        return len(self.tracks)

    # ---- one frame ----------------------------------------------------------------------------
    def process(self, stamp_ns: int, layout: str, ids: list[str], uv: np.ndarray, conf: np.ndarray,
                K: np.ndarray, dist: np.ndarray, depth: np.ndarray | None = None) -> LiftedFrame:
        """Lift the people of one keypoint message. uv (P,K,2) pixels, conf (P,K) of `layout`.

        Raises layouts.LayoutError for a layout or keypoint count that cannot be mapped.
        """
        cfg = self.config
        warnings = Counter()
        stamp = stamp_ns * 1e-9
        if self._input_stamps and stamp_ns < self._input_stamps[-1]:
            self._input_stamps.clear()  # a bag looped: the tracks reset themselves on the same test
        self._input_stamps.append(stamp_ns)

        uv, conf = self._screen_keypoints(np.asarray(uv, np.float64), np.asarray(conf, np.float64), K, warnings)
        uv17, conf17 = to_h36m(layout, uv, conf, cfg.min_confidence)  # (P,17,2), (P,17)
        keep = (conf17 > 0).sum(1) >= MIN_CONFIDENT_JOINTS
        if not keep.all():
            warnings["too_few_keypoints"] += int((~keep).sum())
            ids = [i for i, k in zip(ids, keep) if k]
            uv17, conf17 = uv17[keep], conf17[keep]

        ids, duplicates = self.assigner.fill_ids(ids, uv17, conf17, stamp)
        if duplicates:  # row indices of repeated ids; the first person with an id keeps it
            warnings["duplicate_id"] += len(duplicates)
            unique = np.ones(len(ids), bool)
            unique[duplicates] = False
            ids = [i for i, u in zip(ids, unique) if u]
            uv17, conf17 = uv17[unique], conf17[unique]

        xy = pixels_to_normalized(uv17, K, dist if np.any(dist) else None)  # (P,17,2)
        in_view = (np.abs(xy) <= MAX_VIEW_TAN).all(-1)  # False for NaN too: a wild distortion model
        if (~in_view & (conf17 > 0)).any():
            warnings["out_of_view_keypoints"] += int((~in_view & (conf17 > 0)).sum())
            conf17 = np.where(in_view, conf17, 0.0)
        xy = np.where(conf17[..., None] > 0, xy, 0.0)
        frames = np.concatenate([xy, conf17[..., None]], -1).astype(np.float32)  # (P,17,3)
        self.tracks.update(ids, frames, stamp)

        # A streaming model steps every person of this frame (each new frame must enter its cache);
        # only tracks with a real frame `lookahead` steps back can answer for that frame.
        k = cfg.lookahead
        history, stamps = self.tracks.windows(ids)  # (P,T,17,3), (P,T), newest last: read once per frame
        poses = self._step_all(ids, history) if self.streaming and ids else None
        if len(self._input_stamps) <= k:
            return LiftedFrame(stamp_ns, None, k, warnings)
        target_ns = self._input_stamps[-1 - k]
        rows = np.flatnonzero(self.tracks.num_real_frames_of(ids) > k)  # rows of this frame's people
        if len(rows) == 0:
            return LiftedFrame(target_ns, [] if k == 0 else None, k, warnings)
        windows, stamps = history[rows], stamps[rows]
        in_step = np.abs(stamps[:, -1 - k] - target_ns * 1e-9) < 1e-6  # seen in that very frame
        if not in_step.all():
            rows, windows = rows[in_step], windows[in_step]
        if len(rows) == 0:
            return LiftedFrame(target_ns, [] if k == 0 else None, k, warnings)

        frame_input = windows[:, -1 - k]  # (P,17,3) normalised xy + conf
        pose_rel = poses[rows] if poses is not None else self._lift_windows(windows, k)  # (P,17,3) root-relative
        if cfg.body_height:
            pose_rel = scale_to_stature(pose_rel, cfg.body_height)
        depth_hint = None
        if depth is not None and k == 0:
            depth_hint = np.array([robust_torso_depth(depth, uv17[r], conf17[r]) for r in rows])
        root, solved = solve_root_translation(pose_rel, frame_input[..., :2], frame_input[..., 2], depth_hint)
        solved &= np.isfinite(pose_rel).all((1, 2))  # never publish a NaN skeleton
        if not solved.all():
            warnings["root_unsolved"] += int((~solved).sum())
        positions = pose_rel + root[:, None]  # (P,17,3) camera frame
        uv_frame = normalized_to_pixels(frame_input[..., :2], K)  # (P,17,2) undistorted pixels
        confidence = frame_input[..., 2].copy()  # (P,17); a copy, so results do not pin the windows
        from_depth = np.isfinite(depth_hint) if depth_hint is not None else np.zeros(len(rows), bool)
        people = [LiftedPerson(ids[r], positions[n], root[n], confidence[n], int(from_depth[n]), uv_frame[n])
                  for n, r in enumerate(rows) if solved[n]]
        return LiftedFrame(target_ns, people, k, warnings)

    # Both paths lift in a view turned onto each frame's person (posemoe_ros/geometry/optical_axis.py), as the
    # models were trained: an off-axis person is otherwise seen sheared, and comes out shrunk and too
    # close. The 3D of the answered frame is turned back with that frame's own rotation.
    def _step_all(self, ids: list[str], windows: np.ndarray) -> np.ndarray:
        """One streaming step for every id's newest frame -> (P,17,3) root-relative pose of the frame
        `lookahead` back (rows whose track is younger than that hold garbage the caller skips)."""
        k = self.config.lookahead
        x, R = view_on_axis(windows[:, -1])
        past, ages = self.tracks.cache(ids)
        pose, new_kv = self._run(x.astype(np.float32), past, ages, k)
        self.tracks.store_cache(ids, new_kv)
        if k:
            _, R = view_on_axis(windows[:, -1 - k])  # the answered frame's own view
        return rotate_points_back(pose.astype(np.float64), R).astype(np.float32)

    def _lift_windows(self, windows: np.ndarray, k: int) -> np.ndarray:
        """A full-window model over (P,T,17,3) windows -> (P,17,3) root-relative pose of frame T-1-k."""
        view, R = view_on_axis(windows)  # per frame
        pose = self._run(view.astype(np.float32))[:, -1 - k]
        return rotate_points_back(pose.astype(np.float64), R[:, -1 - k]).astype(np.float32)

    @staticmethod
    def _screen_keypoints(uv: np.ndarray, conf: np.ndarray, K: np.ndarray, warnings: Counter):
        """Count non-finite keypoints and mark the ones out of any view missing (NaN): (uv, conf)."""
        if uv.shape[-1:] != (2,) or conf.shape != uv.shape[:-1]:
            return uv, conf  # to_h36m says what is wrong with the shapes
        finite = np.isfinite(uv).all(-1) & np.isfinite(conf)
        if not finite.all():
            warnings["nonfinite_keypoints"] += int((~finite).sum())
        with np.errstate(invalid="ignore", over="ignore"):
            far = finite & (np.abs(pixels_to_normalized(uv, K)) > MAX_VIEW_TAN).any(-1)
        if far.any():
            warnings["out_of_view_keypoints"] += int(far.sum())
            uv = np.where(far[..., None], np.nan, uv)
        return uv, conf

    def _torch_forward(self, windows: np.ndarray) -> np.ndarray:
        return torch_window(self.model, windows, self.device, self.dtype)

    def _torch_step(self, x: np.ndarray, past: np.ndarray, ages: np.ndarray, k: int):
        return torch_step(StreamingStep(self.model), x, past, ages, k, self.device, self.dtype)


# The torch engine as plain functions, so bench/streaming_latency.py times the node's own code on
# CUDA in either dtype. Numpy in, float32 numpy out: the copy back waits for the GPU, so a call's
# time is the whole frame's.
@torch.inference_mode()
def torch_window(model: torch.nn.Module, windows: np.ndarray, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """A full-window model over (P,T,17,3) windows -> (P,T,17,3) root-relative poses."""
    return model(torch.from_numpy(windows).to(device, dtype)).float().cpu().numpy()


@torch.inference_mode()
def torch_step(step: StreamingStep, x: np.ndarray, past: np.ndarray, ages: np.ndarray, k: int,
               device: torch.device, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """One streaming step: x (P,17,3) newest frames, past/ages the tracks' caches -> (pose, new cache)."""
    to = lambda a: torch.from_numpy(a).to(device, dtype)  # noqa: E731
    pose, new_kv = step(to(x), to(past), torch.from_numpy(ages).to(device), k)
    return pose.float().cpu().numpy(), new_kv.float().cpu().numpy()
