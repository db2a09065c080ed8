"""What a 2D keypoint detector does to perfect joints, so training inputs look like the node's inputs.

Two parts, both documented with their parameters in docs/data.md:
1. `detector_keypoints` (3D, before projection): the systematic gap between motion-capture joints and
   COCO-style keypoints as the ROS node maps them to H36M (pelvis = mid-hip, thorax = mid-shoulder,
   spine = mid(pelvis, thorax), neck_nose = nose, head = mid-ears moved up). COCO hips sit wider and
   higher than mocap hip joints, the nose is in front of the face, the ears below the head top.
2. `corrupt_keypoints` (2D, pixels): jitter scaled with the person's pixel height (larger at wrists
   and ankles), temporally correlated (AR(1)), outliers, missing joints, and confidences that fall as
   the error grows.
"""
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from posemoe_ros.geometry.stature import bone_lengths, standing_height
from posemoe_ros.skeleton import JOINT_INDEX as J, NUM_JOINTS

# Jitter multiplier per joint (H36M order): extremities are detected worse than the torso.
JOINT_JITTER = np.array([1.0, 1.2, 1.3, 1.8, 1.2, 1.3, 1.8, 1.0, 1.0, 0.8, 1.0, 1.0, 1.5, 2.5, 1.0, 1.5, 2.5])


@dataclass
class NoiseConfig:
    # systematic keypoint offsets, as fractions of the body height (drawn once per sequence)
    keypoint_offsets: bool = True
    hip_half_width: tuple[float, float] = (0.065, 0.095)  # COCO hip keypoint to mid-hip, sideways
    hip_raise: tuple[float, float] = (0.0, 0.04)         # COCO hips above the mocap hip joints
    nose_forward: tuple[float, float] = (0.02, 0.05)     # nose in front of the neck_nose joint
    nose_up: tuple[float, float] = (0.0, 0.02)
    head_drop: tuple[float, float] = (0.0, 0.04)         # node's head (ears moved up) below the head top
    # 2D noise
    jitter: tuple[float, float] = (0.002, 0.012)   # per-sequence jitter std, fraction of pixel height
    temporal_corr: tuple[float, float] = (0.3, 0.9)  # AR(1) coefficient per frame (detector smoothing)
    missing_prob: tuple[float, float] = (0.0, 0.01)  # per-sequence rate of missing-run starts per joint-frame
    missing_run: tuple[int, int] = (1, 15)           # missing runs last this many frames
    outlier_prob: float = 0.003                      # per joint-frame: a gross error (e.g. left/right swap)
    outlier_scale: float = 0.15                      # outlier offset std, fraction of pixel height
    conf_sigma: float = 0.03                         # conf ~ exp(-0.5 (err / (conf_sigma * height))^2)
    conf_noise: float = 0.05


def _body_frame(x: np.ndarray):
    """Unit up, left and forward vectors (T,3) of joints x (T,17,3) (any right-handed frame)."""
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
    up = unit(x[:, J["thorax"]] - x[:, J["pelvis"]])
    left = unit(x[:, J["l_shoulder"]] - x[:, J["r_shoulder"]] + x[:, J["l_hip"]] - x[:, J["r_hip"]])
    forward = unit(np.cross(left, up))
    left = np.cross(up, forward)
    return up, left, forward


def detector_keypoints(x: np.ndarray, rng: np.random.Generator, config: NoiseConfig = NoiseConfig(),
                       height: float | None = None) -> np.ndarray:
    """Joints x (T,17,3) -> where COCO keypoints, mapped to H36M as the node does, would put them."""
    if not config.keypoint_offsets:
        return x.copy()
    c = config
    if height is None:
        height = float(standing_height(np.median(bone_lengths(x), axis=0)))
    draw = lambda r: rng.uniform(*r) * height
    up, left, forward = _body_frame(x)
    y = x.copy()
    mid_hip = 0.5 * (x[:, J["l_hip"]] + x[:, J["r_hip"]])
    half, raise_ = draw(c.hip_half_width), draw(c.hip_raise)
    y[:, J["l_hip"]] = mid_hip + half * left + raise_ * up
    y[:, J["r_hip"]] = mid_hip - half * left + raise_ * up
    y[:, J["pelvis"]] = 0.5 * (y[:, J["l_hip"]] + y[:, J["r_hip"]])
    y[:, J["thorax"]] = 0.5 * (x[:, J["l_shoulder"]] + x[:, J["r_shoulder"]])
    y[:, J["spine"]] = 0.5 * (y[:, J["pelvis"]] + y[:, J["thorax"]])
    y[:, J["neck_nose"]] = x[:, J["neck_nose"]] + draw(c.nose_forward) * forward + draw(c.nose_up) * up
    head_axis = x[:, J["head"]] - x[:, J["neck_nose"]]
    head_axis /= np.maximum(np.linalg.norm(head_axis, axis=-1, keepdims=True), 1e-9)
    y[:, J["head"]] = x[:, J["head"]] - draw(c.head_drop) * head_axis
    return y


def pixel_height(uv: np.ndarray) -> np.ndarray:
    """Per-frame size of the person in pixels (T,): the larger side of the keypoints' bounding box."""
    extent = np.nanmax(uv, axis=1) - np.nanmin(uv, axis=1)         # (T,2)
    return np.maximum(extent.max(-1), 1.0)


def _ar1(shape, rho: float, rng) -> np.ndarray:
    """Unit-variance stationary AR(1) noise along axis 0."""
    eps = rng.standard_normal(shape)
    eps[0] /= np.sqrt(1 - rho**2)                                   # start in the stationary distribution
    return lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], eps, axis=0)


def corrupt_keypoints(uv: np.ndarray, rng: np.random.Generator, config: NoiseConfig = NoiseConfig()):
    """Perfect pixels uv (T,17,2) -> (noisy uv (T,17,2), conf (T,17)); missing joints: conf 0, uv NaN."""
    c = config
    T = uv.shape[0]
    scale = pixel_height(uv)[:, None, None]                         # (T,1,1)
    sigma = rng.uniform(*c.jitter) * JOINT_JITTER[None, :, None]     # (1,17,1) fraction of height
    noise = _ar1((T, NUM_JOINTS, 2), rng.uniform(*c.temporal_corr), rng) * sigma
    outliers = rng.random((T, NUM_JOINTS)) < c.outlier_prob
    noise[outliers] += rng.standard_normal((outliers.sum(), 2)) * c.outlier_scale
    noisy = uv + noise * scale
    # confidence falls with the error relative to the person's size, plus the detector's own noise
    err = np.linalg.norm(noise, axis=-1)                             # (T,17) fraction of height
    conf = np.exp(-0.5 * (err / c.conf_sigma) ** 2) * rng.uniform(0.85, 1.0, (1, NUM_JOINTS))
    conf = np.clip(conf + c.conf_noise * rng.standard_normal(conf.shape), 0.05, 1.0)
    # missing runs (occlusion, out of frame): starts at random, each lasting a few frames
    t0, j = np.nonzero(rng.random((T, NUM_JOINTS)) < rng.uniform(*c.missing_prob))
    runs = rng.integers(c.missing_run[0], c.missing_run[1] + 1, len(t0))
    edges = np.zeros((T + 1, NUM_JOINTS), int)                      # +1 where a run starts, -1 past its end
    np.add.at(edges, (t0, j), 1)
    np.add.at(edges, (np.minimum(t0 + runs, T), j), -1)
    missing = np.cumsum(edges[:T], axis=0) > 0
    conf[missing] = 0.0
    noisy[missing] = np.nan
    return noisy, conf.astype(np.float32)
