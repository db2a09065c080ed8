"""Training / evaluation windows: mocap clip -> random camera -> detector-like 2D input (contract 4).

Each item is one window of `num_frames` frames of one clip, seen by a freshly sampled virtual camera
with a freshly sampled detector noise (and, with augment=True, new body proportions):
  "input"      (T,17,3) float32  (x_n, y_n, conf), normalised undistorted coordinates; conf 0 -> xy 0
  "target"     (T,17,3) float32  root-relative joints in the camera optical frame, metres
  "root"       (T,3)    float32  pelvis in the camera frame, metres
  "K"          (3,3)    float32
  "image_size" (2,)     float32  (w, h)
deterministic=True seeds each item by (seed, index): the same camera and noise every time (evaluation).
"""
import numpy as np
import torch

from posemoe_ros.data.bone_length import BoneConfig, augment_bone_lengths
from posemoe_ros.data.detector_noise import NoiseConfig, corrupt_keypoints, detector_keypoints
from posemoe_ros.data.virtual_camera import CameraConfig, sample_camera
from posemoe_ros.geometry.camera import pixels_to_normalized, project, world_to_camera
from posemoe_ros.geometry.stature import bone_lengths, standing_height


def window_starts(num_clip_frames: int, num_frames: int, stride: int, centred: bool = False) -> np.ndarray:
    """First frame of each window (may be negative or run past the end: edges are replicated).

    centred=False: windows inside the clip (one centred window if the clip is shorter than num_frames).
    centred=True: one window centred on every stride-th frame (per-frame evaluation, VideoPose3D style)."""
    F, T = num_clip_frames, num_frames
    if centred:
        return np.arange(0, F, stride) - T // 2
    if F < T:
        return np.array([-((T - F) // 2)])
    return np.arange(0, F - T + 1, stride)


class LiftingWindows(torch.utils.data.Dataset):
    def __init__(self, clips, num_frames: int, stride: int = 1, seed: int = 0, augment: bool = True,
                 deterministic: bool = False, centred: bool = False, camera: CameraConfig = CameraConfig(),
                 noise: NoiseConfig = NoiseConfig(), bones: BoneConfig = BoneConfig()):
        self.clips = list(clips)
        self.num_frames, self.seed, self.augment, self.deterministic = num_frames, seed, augment, deterministic
        self.camera, self.noise, self.bones = camera, noise, bones
        index = [(i, s) for i, clip in enumerate(self.clips)
                 for s in window_starts(clip.joints.shape[0], num_frames, stride, centred)]
        self.index = np.array(index, dtype=np.int64).reshape(-1, 2)  # (N, 2): clip, start frame

    def __len__(self) -> int:
        return len(self.index)

    def _rng(self, i: int) -> np.random.Generator:
        if self.deterministic:
            return np.random.default_rng([self.seed, i])
        # fresh every call; the global numpy state is seeded per worker (see training's worker_init_fn)
        return np.random.default_rng([self.seed, i, np.random.randint(2**31)])

    def frames(self, i: int) -> np.ndarray:
        """World joints (T,17,3) of window i, edges replicated."""
        c, s = self.index[i]
        joints = self.clips[c].joints
        return joints[np.clip(np.arange(s, s + self.num_frames), 0, len(joints) - 1)]

    def __getitem__(self, i: int) -> dict:
        rng = self._rng(int(i))
        world = self.frames(int(i)).astype(np.float64)                   # (T,17,3)
        if self.augment:
            world = augment_bone_lengths(world, rng, self.bones)
        cam = sample_camera(world, rng, self.camera)
        joints = world_to_camera(world, cam.R, cam.t)                    # (T,17,3) optical frame
        height = float(standing_height(np.median(bone_lengths(world), axis=0)))
        keypoints = detector_keypoints(joints, rng, self.noise, height)  # where a detector would see them
        uv, conf = corrupt_keypoints(project(keypoints, cam.K), rng, self.noise)
        xy = pixels_to_normalized(uv, cam.K)                              # affine: synthetic cameras are ideal
        xy = np.where(conf[..., None] > 0, np.nan_to_num(xy), 0.0)
        return {
            "input": np.concatenate([xy, conf[..., None]], -1).astype(np.float32),
            "target": (joints - joints[:, :1]).astype(np.float32),
            "root": joints[:, 0].astype(np.float32),
            "K": cam.K.astype(np.float32),
            "image_size": np.array(cam.image_size, dtype=np.float32),
        }


def clip_windows(clip, num_frames: int, stride: int = 1, seed: int = 0) -> LiftingWindows:
    """Deterministic windows centred on every stride-th frame of one clip, in order (per-clip evaluation)."""
    return LiftingWindows([clip], num_frames, stride=stride, seed=seed, augment=False, deterministic=True,
                          centred=True)
