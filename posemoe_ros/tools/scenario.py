"""A scripted scene for the demo and the benchmarks: a virtual robot camera watching procedurally
animated people, seen through the documented detector model (docs/data.md), in the coco17 layout.

People 0-2 are scripted: `walker` walks laps across the room, `waver` stands facing the robot,
waves, then reaches towards it, `late` crosses the back of the room in the middle of the run
(enters at 30 % of the duration). More people (`person_3`, ...) do other procedural motions at
distinct places 3-8 m away. Everything is computed in __init__; frame(i) only selects rows.

World: Y up, metres, the camera at (0, CAMERA_HEIGHT, 0) looking along +Z, pitched down. Truth
and keypoints are in the camera's REP-103 optical frame (x right, y down, z forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posemoe_ros.data.detector_noise import NoiseConfig, corrupt_keypoints, detector_keypoints
from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.data.virtual_camera import look_rotation
from posemoe_ros.geometry.camera import intrinsics_matrix, project, world_to_camera
from posemoe_ros.pipeline.layouts import HEAD_RAISE
from posemoe_ros.skeleton import JOINT_INDEX as J

CAMERA_HEIGHT = 1.1     # m, a mobile robot's head camera
CAMERA_PITCH = -0.05    # rad, tilted down a little
FOCAL_PER_WIDTH = 0.72  # fx = fy = 0.72 * width: 69 deg horizontal field of view (an RGB-D camera's colour)
MIN_VISIBLE = 10        # a person is detected when this many keypoints lie inside the image

# Where COCO's face keypoints sit, as fractions of the stature H (ears beside the head, eyes in front).
EAR_HALF_WIDTH = 0.042
EYE_HALF_WIDTH = 0.018
EYE_FORWARD = 0.05

# COCO-17 keypoints taken straight from the (detector-offset) H36M joints.
_COCO_FROM_H36M = {0: "neck_nose", 5: "l_shoulder", 6: "r_shoulder", 7: "l_elbow", 8: "r_elbow", 9: "l_wrist",
                   10: "r_wrist", 11: "l_hip", 12: "r_hip", 13: "l_knee", 14: "r_knee", 15: "l_ankle",
                   16: "r_ankle"}
# The H36M slot whose jitter weight (detector_noise.JOINT_JITTER) each COCO keypoint takes: limbs
# their own joint, the nose neck_nose, eyes and ears the torso/head slots (weight 1.0).
_NOISE_SLOT = np.array([J[n] for n in ("neck_nose", "spine", "thorax", "pelvis", "head", "l_shoulder",
                                       "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip",
                                       "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")])

# Scripted people: the walker's lap (a stadium track) and where the others stand or pass.
LAP_X, LAP_Z, LAP_RADIUS = 1.2, (4.0, 5.2), 0.6  # straights from -LAP_X to LAP_X at z = LAP_Z, m
WAVER_AT = (-0.8, 3.0)                           # (x, z) floor position, m
LATE_Z = 6.5                                     # the late person crosses the back of the room
LATE_WINDOW = (0.30, 0.85)                       # enters and leaves at these fractions of the duration
EXTRA_KINDS = ("turn", "sit", "wave", "reach")
EXTRA_DISTANCE = (3.0, 7.2)                      # m (a whole body fits from ~3 m; "turn" circles ~0.8 m)


@dataclass(frozen=True)
class ScenarioConfig:
    num_people: int = 3
    duration: float = 10.0  # s
    fps: float = 30.0
    seed: int = 0
    width: int = 1280
    height: int = 720
    noise: bool = True      # False: a perfect detector (no keypoint offsets, no 2D noise, conf 1)


@dataclass
class ScenarioFrame:
    t: float              # s since the start
    ids: list[str]
    uv: np.ndarray        # (P,17,2) coco17 pixels; missing keypoints 0 with conf 0
    conf: np.ndarray      # (P,17)
    truth: np.ndarray     # (P,17,3) H36M-17 joints, camera optical frame, metres


def _place(local: np.ndarray, yaw: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Local joints (F,17,3) (facing +Z, pelvis above the origin) -> world, turned by yaw (F,) about +Y."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    return np.stack([c * x + s * z, y, -s * x + c * z], -1) + position[:, None]


def _walk_in_place(seconds: float, fps: float, seed: int, height: float) -> tuple[np.ndarray, float]:
    """A walking gait with its forward travel removed (F,17,3), and the speed it was made for (m/s)."""
    world = generate_motion("walk", seconds, fps, seed, height)  # heading 0: travels along +Z
    travel = world[:, 0].copy()
    travel[:, 1] = 0.0
    speed = float(np.linalg.norm(travel[-1] - travel[0]) / max(len(world) - 1, 1) * fps)
    return world - travel[:, None], speed


def _lap(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floor position (F,3) and heading (F,) at arc length s along the walker's stadium track:
    the front straight walking +X, a bend away from the camera, the back straight walking -X, a bend back."""
    a, (z0, z1), r = LAP_X, LAP_Z, LAP_RADIUS
    zc = 0.5 * (z0 + z1)
    bounds = np.cumsum([0.0, 2 * a, np.pi * r, 2 * a, np.pi * r])
    s = np.mod(s, bounds[-1])
    seg = np.clip(np.searchsorted(bounds, s, side="right") - 1, 0, 3)
    u = s - bounds[seg]
    th = u / r
    cases = [seg == k for k in range(4)]
    x = np.select(cases, [-a + u, a + r * np.sin(th), a - u, -a - r * np.sin(th)])
    z = np.select(cases, [np.full_like(u, z0), zc - r * np.cos(th), np.full_like(u, z1), zc + r * np.cos(th)])
    yaw = np.select(cases, [np.full_like(u, np.pi / 2), np.pi / 2 - th, np.full_like(u, -np.pi / 2), -np.pi / 2 - th])
    return np.stack([x, np.zeros_like(x), z], -1), yaw


def _facing_camera(x: float, z: float) -> float:
    """Heading (rad about +Y) of a person at floor point (x, z) who looks at the camera."""
    return float(np.arctan2(-x, -z))


def _crossfade(a: np.ndarray, b: np.ndarray, t: np.ndarray, at: float, width: float) -> np.ndarray:
    """a before time `at`, b after it, blended linearly over `width` seconds."""
    w = np.clip((t - at) / width + 0.5, 0.0, 1.0)[:, None, None]
    return (1 - w) * a + w * b


class Scenario:
    layout = "coco17"

    def __init__(self, config: ScenarioConfig = ScenarioConfig()):
        c = self.config = config
        if c.num_people < 1 or c.duration <= 0 or c.fps <= 0:
            raise ValueError(f"scenario needs num_people >= 1, duration > 0, fps > 0; got {c}")
        self.width, self.height = c.width, c.height
        f = FOCAL_PER_WIDTH * c.width
        self.K = intrinsics_matrix(f, f, c.width / 2, c.height / 2)
        self.R = look_rotation(0.0, CAMERA_PITCH, 0.0)          # world -> optical
        self.t_cam = -self.R @ np.array([0.0, CAMERA_HEIGHT, 0.0])
        self.num_frames = max(1, int(round(c.duration * c.fps)))
        self.times = np.arange(self.num_frames) / c.fps
        self.ids: list[str] = []
        truth, uv, conf = [], [], []
        worlds = self._scripted_people()
        rng = np.random.default_rng([c.seed, 999])
        for n in range(3, c.num_people):
            worlds.append(self._extra_person(n, rng, worlds))
        for n, world in enumerate(worlds[:c.num_people]):
            x_cam = world_to_camera(world.astype(np.float64), self.R, self.t_cam)
            person_uv, person_conf = self._detect(x_cam, np.random.default_rng([c.seed, n]))
            truth.append(x_cam)
            uv.append(person_uv)
            conf.append(person_conf)
        self.ids = self.ids[:c.num_people]
        self.truth = np.stack(truth)                 # (N,F,17,3)
        self.uv = np.stack(uv)                       # (N,F,17,2)
        self.conf = np.stack(conf)                   # (N,F,17)
        self.present = (self.conf > 0).sum(-1) >= MIN_VISIBLE   # (N,F)

    # ---- the people ----------------------------------------------------------------------------
    def _scripted_people(self) -> list[np.ndarray]:
        c, t, seconds = self.config, self.times, self.config.duration
        # walker: laps of the stadium track at the speed its gait was made for
        gait, speed = _walk_in_place(seconds, c.fps, c.seed * 10 + 1, 1.75)
        pos, yaw = _lap(speed * t)
        walker = _place(gait, yaw, pos)
        # waver: stands facing the robot, waves, then reaches towards it
        x, z = WAVER_AT
        heading = _facing_camera(x, z)
        wave = generate_motion("wave", seconds, c.fps, c.seed * 10 + 2, 1.65, (x, 0, z), heading)
        reach = generate_motion("reach", seconds, c.fps, c.seed * 10 + 3, 1.65, (x, 0, z), heading)
        waver = _crossfade(wave, reach, t, 0.5 * seconds, 0.6)
        # late: crosses the back of the room from +X to -X inside LATE_WINDOW of the run
        edge = LATE_Z * c.width / (2 * FOCAL_PER_WIDTH * c.width) + 0.6   # just outside the view, m
        t_in, t_out = (w * seconds for w in LATE_WINDOW)
        late_speed = float(np.clip(2 * edge / (t_out - t_in), 0.8, 2.0))
        gait, _ = _walk_in_place(seconds, c.fps, c.seed * 10 + 4, 1.70)
        x_late = edge - late_speed * (t - t_in)
        late = _place(gait, np.full(len(t), -np.pi / 2), np.stack([x_late, 0 * t, LATE_Z + 0 * t], -1))
        self.ids += ["walker", "waver", "late"]
        return [walker, waver, late]

    def _extra_person(self, n: int, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
        """A procedural person in view for the whole run, never within 1 m of anyone else."""
        c = self.config
        kind = EXTRA_KINDS[(n - 3) % len(EXTRA_KINDS)]
        local = generate_motion(kind, c.duration, c.fps, c.seed * 10 + n, rng.uniform(1.55, 1.90))
        floor = np.stack([o[::5, 0] for o in others])[..., [0, 2]]  # (N,F/5,2) others' pelvis, every 5th frame
        half_fov = np.arctan(c.width / 2 / self.K[0, 0])
        best, best_gap = None, -np.inf
        for _ in range(100):  # keep the first that fits; else the one farthest from the others
            d, az = rng.uniform(*EXTRA_DISTANCE), rng.uniform(-0.8, 0.8) * half_fov
            x, z = d * np.sin(az), d * np.cos(az)
            yaw = np.full(len(local), _facing_camera(x, z) + rng.uniform(-0.8, 0.8))
            pelvis = _place(local[::5, :1], yaw[::5], np.array([[x, 0.0, z]]))[:, 0, [0, 2]]
            gap = np.min(np.linalg.norm(floor - pelvis[None], axis=-1))  # closest anyone comes at the same time
            if gap > best_gap and self._fully_visible(_place(local[::3], yaw[::3], np.array([[x, 0.0, z]]))):
                best, best_gap = (yaw, x, z), gap
                if gap > 1.0:
                    break
        yaw, x, z = best if best is not None else (yaw, x, z)
        self.ids.append(f"person_{n}")
        return _place(local, yaw, np.array([[x, 0.0, z]]))

    def _fully_visible(self, world: np.ndarray) -> bool:
        cam = world_to_camera(world.astype(np.float64), self.R, self.t_cam)
        uv = project(cam, self.K)
        size = np.array([self.width, self.height], float)
        return bool(np.all(cam[..., 2] > 0.5) and np.all(uv >= 0.02 * size) and np.all(uv <= 0.98 * size))

    # ---- the detector ----------------------------------------------------------------------------
    def _detect(self, x_cam: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame joints (F,17,3) -> what a COCO detector reports: uv (F,17,2), conf (F,17)."""
        noise = NoiseConfig(keypoint_offsets=self.config.noise)
        offset = detector_keypoints(x_cam, rng, noise)               # H36M order, COCO-like hips, nose, head
        clean = project(coco17_points(offset, x_cam), self.K)       # (F,17,2)
        if self.config.noise:   # jitter weights by body part: run the noise model in H36M slot order
            slots = np.empty_like(clean)
            slots[:, _NOISE_SLOT] = clean
            noisy, conf_slots = corrupt_keypoints(slots, rng, noise)
            uv, conf = noisy[:, _NOISE_SLOT], conf_slots[:, _NOISE_SLOT]
        else:
            uv, conf = clean.copy(), np.ones(clean.shape[:2], np.float32)
        size = np.array([self.width, self.height], float)
        inside = np.all((clean >= 0) & (clean <= size), -1) & (x_cam[:, :1, 2] > 0.3)  # out of frame: not seen
        conf = np.where(inside & np.isfinite(uv).all(-1), conf, 0.0).astype(np.float32)
        uv = np.where(conf[..., None] > 0, np.clip(np.nan_to_num(uv), 0, size), 0.0)
        return uv, conf

    # ---- access -----------------------------------------------------------------------------------
    def frame(self, i: int) -> ScenarioFrame:
        """The people in view at frame i (0 <= i < num_frames)."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} outside 0..{self.num_frames - 1}")
        rows = np.flatnonzero(self.present[:, i])
        return ScenarioFrame(float(self.times[i]), [self.ids[r] for r in rows], self.uv[rows, i].copy(),
                             self.conf[rows, i].copy(), self.truth[rows, i].copy())


def coco17_points(offset: np.ndarray, x: np.ndarray) -> np.ndarray:
    """3D COCO-17 keypoints (F,17,3) such that the node's H36M mapping (layouts.to_h36m) gives back the
    detector-offset joints `offset` (H36M order, data/detector_noise.detector_keypoints): nose = neck_nose,
    hips and limbs as they are, and mid-ears placed so that mid-ears + HEAD_RAISE (mid-ears - mid-shoulder)
    is the head. Ears sit beside that point, eyes in front of it; x (the mocap joints) gives the body's
    left and forward directions and its stature."""
    coco = np.zeros(offset.shape[:1] + (17, 3))
    for k, name in _COCO_FROM_H36M.items():
        coco[:, k] = offset[:, J[name]]
    shoulders = 0.5 * (offset[:, J["l_shoulder"]] + offset[:, J["r_shoulder"]])
    ears = (offset[:, J["head"]] + HEAD_RAISE * shoulders) / (1 + HEAD_RAISE)
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)  # noqa: E731
    left = unit(x[:, J["l_shoulder"]] - x[:, J["r_shoulder"]])
    up = unit(x[:, J["thorax"]] - x[:, J["pelvis"]])
    forward = unit(np.cross(left, up))
    stature = np.median(np.linalg.norm(x[:, J["head"]] - 0.5 * (x[:, J["l_ankle"]] + x[:, J["r_ankle"]]), axis=-1))
    coco[:, 3] = ears + EAR_HALF_WIDTH * stature * left
    coco[:, 4] = ears - EAR_HALF_WIDTH * stature * left
    eyes = ears + EYE_FORWARD * stature * forward
    coco[:, 1] = eyes + EYE_HALF_WIDTH * stature * left
    coco[:, 2] = eyes - EYE_HALF_WIDTH * stature * left
    return coco
