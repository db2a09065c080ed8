"""Random pinhole cameras looking at a person (world Y up -> REP-103 optical frame: x right, y down, z forward)."""
from dataclasses import dataclass

import numpy as np

from posemoe_ros.geometry.camera import intrinsics_matrix, world_to_camera


@dataclass
class CameraConfig:
    focal_range: tuple[float, float] = (400.0, 1600.0)  # fx = fy, pixels
    image_sizes: tuple[tuple[int, int], ...] = ((640, 480), (848, 480), (1280, 720), (1280, 960), (1920, 1080))
    principal_jitter: float = 0.02    # principal point offset from the centre, fraction of the image size
    distance_range: tuple[float, float] = (1.5, 8.0)  # horizontal distance to the person's mean pelvis, m
    height_range: tuple[float, float] = (0.3, 2.5)    # camera height above the floor, m
    max_pitch_deg: float = 30.0
    max_roll_deg: float = 5.0
    aim_jitter_deg: float = 5.0       # the person need not sit in the image centre
    margin: float = 0.02              # keep every joint this fraction of the image inside its border
    min_depth: float = 0.5            # every joint at least this far in front of the camera, m
    max_tries: int = 20


@dataclass
class VirtualCamera:
    K: np.ndarray            # (3,3)
    R: np.ndarray            # (3,3) world -> camera rotation
    t: np.ndarray            # (3,)  x_cam = R x_world + t
    image_size: tuple[int, int]  # (w, h)


def look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World -> optical-frame rotation of a camera looking along azimuth `yaw` (about +Y, 0 = +Z),
    tilted up by `pitch`, rolled by `roll` about its optical axis."""
    f = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    right = np.cross(f, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    R = np.stack([right, down, f])                   # rows: camera axes in world coordinates
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R


def _fitting_focal(xy: np.ndarray, cx: float, cy: float, w: int, h: int, margin: float) -> float:
    """Largest focal length that keeps normalised points xy (N,2) inside the image (with margin)."""
    lo = np.array([margin * w, margin * h]) - [cx, cy]            # allowed u - cx, v - cy
    hi = np.array([(1 - margin) * w, (1 - margin) * h]) - [cx, cy]
    with np.errstate(divide="ignore"):
        limits = np.concatenate([np.where(xy > 0, hi / xy, np.inf).ravel(), np.where(xy < 0, lo / xy, np.inf).ravel()])
    return float(limits.min())


def sample_camera(joints: np.ndarray, rng: np.random.Generator, config: CameraConfig = CameraConfig()) -> VirtualCamera:
    """A random camera that sees every joint of joints (T,17,3) (world, Y up) in every frame.

    Position: any yaw around the person, distance and height from the config's ranges. It aims at
    the person (plus jitter), pitch clipped to +-max_pitch and a small roll. If the person does not fit
    at the sampled focal length it is lowered (not below the range); otherwise the camera is resampled,
    and after max_tries the focal length is lowered as far as needed."""
    c = config
    pts = joints.reshape(-1, 3).astype(np.float64)
    centre = joints[:, 0].mean(0)                                  # mean pelvis
    target_y = 0.5 * (pts[:, 1].min() + pts[:, 1].max())
    for attempt in range(c.max_tries):
        w, h = c.image_sizes[rng.integers(len(c.image_sizes))]
        fx = rng.uniform(*c.focal_range)
        cx = w / 2 + rng.uniform(-1, 1) * c.principal_jitter * w
        cy = h / 2 + rng.uniform(-1, 1) * c.principal_jitter * h
        around = rng.uniform(0, 2 * np.pi)                          # where the camera stands
        dist = rng.uniform(*c.distance_range)
        position = centre + dist * np.array([np.sin(around), 0.0, np.cos(around)])
        position[1] = rng.uniform(*c.height_range)
        jitter = np.radians(c.aim_jitter_deg) * rng.uniform(-1, 1, 2)
        yaw = around + np.pi + jitter[0]                           # look back at the person
        pitch = np.arctan2(target_y - position[1], dist) + jitter[1]
        pitch = np.clip(pitch, -np.radians(c.max_pitch_deg), np.radians(c.max_pitch_deg))
        roll = np.radians(c.max_roll_deg) * rng.uniform(-1, 1)
        R = look_rotation(yaw, pitch, roll)
        t = -R @ position
        cam = world_to_camera(pts, R, t)
        if cam[:, 2].min() < c.min_depth:
            continue
        fit = _fitting_focal(cam[:, :2] / cam[:, 2:], cx, cy, w, h, c.margin)
        if fit >= c.focal_range[0] or attempt == c.max_tries - 1:
            fx = min(fx, fit)
            return VirtualCamera(intrinsics_matrix(fx, fx, cx, cy), R, t, (int(w), int(h)))
    # every try put a joint behind the camera (only for absurd trajectories): step back further
    far = CameraConfig(**{**c.__dict__, "distance_range": (c.distance_range[1], 2 * c.distance_range[1] + 10.0)})
    return sample_camera(joints, rng, far)
