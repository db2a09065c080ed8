"""Procedural human motions (forward kinematics on an H36M-like skeleton) for tests and demos.

Not for training: the motions are simple sinusoids. World axes Y up, metres; the person's local
frame is x = their left, y = up, z = forward, rotated by `heading` (radians about +Y) in the world.
"""
import numpy as np

from posemoe_ros.skeleton import JOINT_INDEX as J, NUM_JOINTS

KINDS = ("walk", "turn", "wave", "reach", "sit")
ANKLE_HEIGHT = 0.08  # ankle joint above the floor, metres (for a 1.75 m person)

# Bone lengths of a 1.75 m person, metres (Human3.6M-like proportions).
BONES_175 = dict(hip=0.12, thigh=0.44, shin=0.43, spine=0.23, thorax=0.25, neck=0.12, head=0.13,
                 shoulder=0.16, upper_arm=0.28, forearm=0.25)


def _limb_dir(flex, abd, side):
    """Unit vectors (..., 3) of a limb hanging down, flexed forward by `flex` and abducted by `abd`."""
    flex, abd = np.broadcast_arrays(np.asarray(flex, float), np.asarray(abd, float))
    return np.stack([side * np.sin(abd), -np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)], -1)


def _pose(t, kind, rng):
    """Joint angles per frame for one motion kind: dict of (F,) arrays (radians)."""
    F = len(t)
    z = np.zeros(F)
    a = dict(r_hip=z, l_hip=z, r_knee=z, l_knee=z, lean=z, r_sh_flex=z, l_sh_flex=z, r_sh_abd=z + 0.1,
             l_sh_abd=z + 0.1, r_elbow=z + 0.2, l_elbow=z + 0.2, r_el_abd=z, l_el_abd=z)
    phase0 = rng.uniform(0, 2 * np.pi)
    if kind in ("walk", "turn"):
        cadence = rng.uniform(0.85, 1.0)  # gait cycles per second
        phi = 2 * np.pi * cadence * t + phase0
        amp = rng.uniform(0.3, 0.4)
        a["r_hip"], a["l_hip"] = amp * np.sin(phi), -amp * np.sin(phi)
        # knee bends in swing (hip moving forward), straight in stance
        a["r_knee"] = 0.1 + 0.9 * np.clip(np.sin(phi + 1.2), 0, None) ** 2
        a["l_knee"] = 0.1 + 0.9 * np.clip(np.sin(phi + 1.2 + np.pi), 0, None) ** 2
        a["r_sh_flex"], a["l_sh_flex"] = -0.3 * np.sin(phi), 0.3 * np.sin(phi)  # arms swing against legs
        a["r_elbow"] = 0.3 + 0.15 * np.sin(phi)
        a["l_elbow"] = 0.3 - 0.15 * np.sin(phi)
        a["lean"] = z + 0.05
    elif kind == "wave":
        a["r_sh_abd"] = z + rng.uniform(2.3, 2.7)  # arm up beside the head
        a["r_el_abd"] = a["r_sh_abd"] + 0.4 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.2, 2.0) * t + phase0)
        a["r_elbow"] = z
    elif kind == "reach":
        s = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(2.5, 3.5) + phase0)  # 0..1..0
        a["r_sh_flex"] = 1.5 * s
        a["r_elbow"] = 0.6 * (1 - s) + 0.05
        a["lean"] = 0.35 * s
    elif kind == "sit":
        s = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(4.0, 5.0) + phase0)  # stand, sit, stand
        a["r_hip"] = a["l_hip"] = 1.5 * s
        a["r_knee"] = a["l_knee"] = 1.6 * s
        a["lean"] = 0.35 * np.sin(np.pi * s) + 0.1 * s
        a["r_sh_flex"] = a["l_sh_flex"] = 0.4 * s
    else:
        raise ValueError(f"unknown motion kind {kind!r}; pick one of {KINDS}")
    return a


def _forward_kinematics(a, L):
    """Local joints (F,17,3), pelvis at the origin."""
    F = len(a["lean"])
    x = np.zeros((F, NUM_JOINTS, 3))
    up = np.stack([np.zeros(F), np.cos(a["lean"]), np.sin(a["lean"])], -1)  # trunk axis, leaning forward
    left = np.array([1.0, 0.0, 0.0])
    x[:, J["r_hip"]] = -L["hip"] * left
    x[:, J["l_hip"]] = L["hip"] * left
    for side, s in (("r", -1.0), ("l", 1.0)):
        hip, knee, ankle = J[f"{side}_hip"], J[f"{side}_knee"], J[f"{side}_ankle"]
        x[:, knee] = x[:, hip] + L["thigh"] * _limb_dir(a[f"{side}_hip"], 0.0, s)
        x[:, ankle] = x[:, knee] + L["shin"] * _limb_dir(a[f"{side}_hip"] - a[f"{side}_knee"], 0.0, s)
    x[:, J["spine"]] = L["spine"] * up
    x[:, J["thorax"]] = x[:, J["spine"]] + L["thorax"] * up
    x[:, J["neck_nose"]] = x[:, J["thorax"]] + L["neck"] * up
    x[:, J["head"]] = x[:, J["neck_nose"]] + L["head"] * up
    for side, s in (("r", -1.0), ("l", 1.0)):
        sh, el, wr = J[f"{side}_shoulder"], J[f"{side}_elbow"], J[f"{side}_wrist"]
        x[:, sh] = x[:, J["thorax"]] + s * L["shoulder"] * left
        x[:, el] = x[:, sh] + L["upper_arm"] * _limb_dir(a[f"{side}_sh_flex"], a[f"{side}_sh_abd"], s)
        el_abd = a[f"{side}_el_abd"] if np.any(a[f"{side}_el_abd"]) else a[f"{side}_sh_abd"]
        x[:, wr] = x[:, el] + L["forearm"] * _limb_dir(a[f"{side}_sh_flex"] + a[f"{side}_elbow"], el_abd, s)
    return x


def generate_motion(kind: str, seconds: float, fps: float = 30, seed: int = 0, height: float = 1.75,
                    start=(0.0, 0.0, 0.0), heading: float = 0.0) -> np.ndarray:
    """World joints (F,17,3) float32, Y up, metres; the pelvis starts above `start` (a floor point)."""
    rng = np.random.default_rng(seed)
    F = max(1, int(round(seconds * fps)))
    t = np.arange(F) / fps
    scale = height / 1.75
    L = {k: v * scale for k, v in BONES_175.items()}
    local = _forward_kinematics(_pose(t, kind, rng), L)                     # (F,17,3)
    # stand on the floor: the lowest ankle sits ANKLE_HEIGHT above y = 0
    lowest = local[:, [J["r_ankle"], J["l_ankle"]], 1].min(1)
    local[..., 1] += (ANKLE_HEIGHT * scale - lowest)[:, None]
    # heading over time and the pelvis's path on the floor
    if kind == "walk":
        yaw, speed = np.full(F, heading), rng.uniform(1.1, 1.4) * scale
    elif kind == "turn":
        yaw, speed = heading + np.radians(rng.uniform(40, 70)) * t, 0.6 * scale
    else:
        yaw, speed = np.full(F, heading), 0.0
    forward = np.stack([np.sin(yaw), np.zeros(F), np.cos(yaw)], -1)          # (F,3)
    path = np.concatenate([np.zeros((1, 3)), np.cumsum(forward[:-1] * speed / fps, 0)])
    if kind == "sit":  # keep the feet planted: the pelvis moves back as the thighs come up
        feet_z = local[:, [J["r_ankle"], J["l_ankle"]], 2].mean(1)
        local[..., 2] -= (feet_z - feet_z[0])[:, None]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    world = np.stack([c * local[..., 0] + s * local[..., 2], local[..., 1],
                      -s * local[..., 0] + c * local[..., 2]], -1)
    return (world + path[:, None] + np.asarray(start, float)).astype(np.float32)
