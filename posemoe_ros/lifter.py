"""One camera's lifting pipeline, frame by frame, without ROS.

keypoints (any layout, pixels) -> H36M-17 joints -> undistorted normalised coordinates ->
per-track temporal windows -> one batched model forward -> root-relative 3D -> absolute 3D via
the root translation (reprojection fit, or the depth image). The ROS node and the offline tools
call `Lifter.process` once per keypoint message.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from posemoe_ros.camera import pixels_to_normalized
from posemoe_ros.layouts import to_h36m
from posemoe_ros.models.weights import load_model
from posemoe_ros.root_translation import robust_torso_depth, solve_root_translation
from posemoe_ros.tracking import TrackAssigner, TrackManager

DEFAULT_WEIGHTS = "posemoe_s.safetensors"
MIN_CONFIDENT_JOINTS = 4  # fewer cannot pin down a root translation


class ModelLoadError(RuntimeError):
    """The weights cannot be loaded; the message is one line a user can act on."""


def default_weights_path() -> Path:
    return Path(str(resources.files("posemoe_ros") / "weights" / DEFAULT_WEIGHTS))


@dataclass(frozen=True)
class LifterConfig:
    lookahead: int = 0  # 0 = causal; k lifts the frame k steps before the newest
    min_confidence: float = 0.3
    track_timeout: float = 1.0  # s
    max_gap: float = 0.5  # s
    match_distance: float = 0.5  # person heights
    max_tracks: int = 256
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # 0 = torch's default


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
        self.num_frames = model.config.num_frames
        self.model_description = description or type(model).__name__
        self.config = None
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
        return cls(model, config, f"{path.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
                                  f"T={model.config.num_frames})")

    # ---- configuration ------------------------------------------------------------------------
    def update_config(self, config: LifterConfig):
        """Apply new settings at run time; ValueError (nothing changed) if they cannot be met."""
        if not 0 <= config.lookahead < self.num_frames:
            raise ValueError(f"lookahead {config.lookahead} must be below the model's window of {self.num_frames}")
        device = resolve_device(config.device)
        if self.config is None or config.device != self.config.device:
            # fp16 halves latency on CUDA; on CPU fp32 is both faster and exact.
            self.dtype = torch.float16 if device.type == "cuda" else torch.float32
            self.model.to(device, self.dtype)
            self.device = device
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        if self.config is None:
            self.tracks = TrackManager(self.num_frames, timeout=config.track_timeout, max_gap=config.max_gap,
                                       max_tracks=config.max_tracks)
            self.assigner = TrackAssigner(max_distance=config.match_distance, timeout=config.track_timeout,
                                          max_tracks=config.max_tracks)
        else:
            self.tracks.timeout, self.tracks.max_gap = config.track_timeout, config.max_gap
            self.tracks.max_tracks = config.max_tracks
            self.assigner.max_distance = config.match_distance
            self.assigner.timeout, self.assigner.max_tracks = config.track_timeout, config.max_tracks
        self.config = config

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

        uv17, conf17 = to_h36m(layout, uv, conf, cfg.min_confidence)  # (P,17,2), (P,17)
        nonfinite = int((~np.isfinite(uv)).any(-1).sum())
        if nonfinite:
            warnings["nonfinite_keypoints"] += nonfinite
        keep = (conf17 > 0).sum(1) >= MIN_CONFIDENT_JOINTS
        if (~keep).any():
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
        xy = np.where(conf17[..., None] > 0, np.nan_to_num(xy), 0.0)
        frames = np.concatenate([xy, conf17[..., None]], -1).astype(np.float32)  # (P,17,3)
        self.tracks.update(ids, frames, stamp)

        # Only tracks with a real frame `lookahead` steps back can answer for that frame.
        k = cfg.lookahead
        if len(self._input_stamps) <= k:
            return LiftedFrame(stamp_ns, None, k, warnings)
        target_ns = self._input_stamps[-1 - k]
        ready = [i for i in ids if self.tracks.num_real_frames(i) > k]
        if not ready:
            return LiftedFrame(target_ns, [] if k == 0 else None, k, warnings)
        windows, stamps = self.tracks.windows(ready)  # (P,T,17,3), (P,T)
        in_step = np.abs(stamps[:, -1 - k] - target_ns * 1e-9) < 1e-6  # seen in that very frame
        ready = [i for i, ok in zip(ready, in_step) if ok]
        windows = windows[in_step]
        if not ready:
            return LiftedFrame(target_ns, [] if k == 0 else None, k, warnings)

        pose_rel = self._forward(windows)[:, -1 - k]  # (P,17,3) root-relative metres
        frame_input = windows[:, -1 - k]  # (P,17,3) normalised xy + conf
        depth_hint, source = None, 0
        if depth is not None and k == 0:
            rows = [ids.index(i) for i in ready]
            depth_hint = np.array([robust_torso_depth(depth, uv17[r], conf17[r]) for r in rows])
            source = 1
        root, solved = solve_root_translation(pose_rel, frame_input[..., :2], frame_input[..., 2], depth_hint)
        people = []
        for n, person_id in enumerate(ready):
            if not solved[n]:
                warnings["root_unsolved"] += 1
                continue
            positions = pose_rel[n] + root[n]
            from_depth = source if depth_hint is not None and np.isfinite(depth_hint[n]) else 0
            uv_frame = frame_input[n, :, :2] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
            people.append(LiftedPerson(person_id, positions, root[n].copy(), frame_input[n, :, 2].copy(),
                                       from_depth, uv_frame))
        return LiftedFrame(target_ns, people, k, warnings)

    @torch.inference_mode()
    def _forward(self, windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(windows).to(self.device, self.dtype)
        return self.model(x).float().cpu().numpy()
