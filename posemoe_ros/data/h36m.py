"""Human3.6M in the VideoPose3D file format (for users who hold a Human3.6M licence; not shipped).

- `data_3d_h36m.npz`: `positions_3d` = {subject: {action: (F, 32, 3) world positions, metres, Z up}}.
- `data_2d_h36m_<detector>.npz`: `positions_2d` = {subject: {action: [ (F, 17, 2) pixels per camera ]}}
  and `metadata` (layout_name, num_joints, keypoints_symmetry, ...).

These files store pickled dicts, so np.load needs allow_pickle=True. That is confined to this module:
only load files you made or trust (a pickle can run code). Our own data files never need it.
"""
import numpy as np

from posemoe_ros.data.mocap import Clip
from posemoe_ros.geometry.camera import intrinsics_matrix

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# VideoPose3D's 32 -> 17 joint selection; yields our skeleton.JOINT_NAMES order
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# The four Human3.6M cameras' intrinsics (fx, fy, cx, cy, width, height), as in VideoPose3D h36m_dataset.py
CAMERAS = {
    "54138969": (1145.04940459, 1143.78109572, 512.54150496, 515.45148698, 1000, 1002),
    "55011271": (1149.67569987, 1147.59161012, 508.84847642, 508.06641023, 1000, 1000),
    "58860488": (1149.14071885, 1148.79897850, 519.81577198, 501.40264084, 1000, 1000),
    "60457274": (1145.51133842, 1144.77392808, 514.96819732, 501.88201854, 1000, 1002),
}
CAMERA_ORDER = ("54138969", "55011271", "58860488", "60457274")  # order of the 2D lists


def _load_pickled_dict(path, key: str) -> dict:
    with np.load(path, allow_pickle=True) as data:  # trusted, user-provided VideoPose3D file
        return data[key].item()


def camera_intrinsics(camera_index: int) -> tuple[np.ndarray, tuple[int, int]]:
    """K (3,3) and image size (w, h) of camera 0..3 in the 2D files' order."""
    fx, fy, cx, cy, w, h = CAMERAS[CAMERA_ORDER[camera_index]]
    return intrinsics_matrix(fx, fy, cx, cy), (w, h)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """Human3.6M world (Z up) -> our world convention (Y up), a proper rotation: (x, y, z) -> (x, z, -y)."""
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], -1)


def load_h36m_3d(path, subjects=None) -> list[Clip]:
    """Clips of data_3d_h36m.npz (17 joints, world Y up, metres), named '<subject>/<action>'."""
    positions = _load_pickled_dict(path, "positions_3d")
    clips = []
    for subject in sorted(positions):
        if subjects is not None and subject not in subjects:
            continue
        for action in sorted(positions[subject]):
            joints = np.asarray(positions[subject][action], dtype=np.float32)
            if joints.shape[1] == 32:
                joints = joints[:, H36M32_TO_17]
            clips.append(Clip(f"{subject}/{action}", z_up_to_y_up(joints).astype(np.float32), 50.0,
                              {"source": "h36m", "subject": subject, "action": action}))
    return clips


def load_h36m_2d(path) -> tuple[dict, dict]:
    """(positions_2d, metadata) of data_2d_h36m_<detector>.npz: subject -> action -> [(F,17,2) px per camera]."""
    positions = _load_pickled_dict(path, "positions_2d")
    metadata = _load_pickled_dict(path, "metadata")
    positions = {s: {a: [np.asarray(c, dtype=np.float32) for c in cams] for a, cams in acts.items()}
                 for s, acts in positions.items()}
    return positions, metadata
