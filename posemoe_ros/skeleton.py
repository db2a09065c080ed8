"""The model's joint layout: Human3.6M 17 joints, as in ../shared/data (pelvis-relative, metres).

Everything inside the core (models, data, metrics) speaks this layout; the ROS layer maps
detector layouts (coco17, body25, ...) onto it in `layouts.py`.
"""
import numpy as np

JOINT_NAMES = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
    "spine", "thorax", "neck_nose", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}
ROOT = 0  # pelvis

# Kinematic tree: parent of each joint (-1 for the root).
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
BONES = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)

LEFT = (4, 5, 6, 11, 12, 13)
RIGHT = (1, 2, 3, 14, 15, 16)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_JOINTS))
    for l, r in zip(LEFT, RIGHT):
        perm[l], perm[r] = r, l
    return tuple(perm)


# Index map that swaps left and right joints (an involution).
FLIP_PERMUTATION = _flip_permutation()


def flip_pose(x, x_channel: int = 0):
    """Mirror a pose (numpy array or torch tensor, joints on axis -2): negate x, swap left/right.

    Works for 2D input (x, y[, conf]) and 3D output (x, y, z); applying it twice is the identity.
    Only the x channel changes sign, so for normalised image coordinates the principal point must
    be at 0 (our camera normalisation guarantees that).
    """
    y = x[..., FLIP_PERMUTATION, :]
    y = y.clone() if hasattr(y, "clone") else np.array(y, copy=True)
    y[..., x_channel] = -y[..., x_channel]
    return y
