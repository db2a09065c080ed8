"""Bone-length augmentation: new body proportions with the same motion (bone directions kept).

The Bandai clips share one skeleton, so without this the model would learn one body. Per sequence we
draw a body height (1.5-2.0 m), a per-bone factor (about +-10 %, the same for a left bone and its right
twin) and a hip width, then rebuild the joints by forward kinematics over skeleton.PARENTS.
"""
from dataclasses import dataclass

import numpy as np

from posemoe_ros.geometry.stature import LEGS, bone_lengths, chain_length, standing_height_to_chain
from posemoe_ros.skeleton import FLIP_PERMUTATION, NUM_JOINTS, PARENTS

_HIPS = (1, 4)


@dataclass
class BoneConfig:
    height_range: tuple[float, float] = (1.5, 2.0)  # standing height, m
    bone_variation: float = 0.10                    # per-bone factor in 1 +- this
    hip_width_range: tuple[float, float] = (0.04, 0.09)  # pelvis-to-hip / stature (Bandai 0.045, CMU 0.085)


def sample_lengths(reference: np.ndarray, rng: np.random.Generator, config: BoneConfig = BoneConfig()) -> np.ndarray:
    """New bone lengths (..., 17) from reference lengths (..., 17): varied per bone, symmetric, at a random height.

    A batch of references (B, 17) draws one body per row."""
    batch = reference.shape[:-1]
    factor = 1 + config.bone_variation * rng.uniform(-1, 1, batch + (NUM_JOINTS,))
    factor = factor[..., np.minimum(np.arange(NUM_JOINTS), FLIP_PERMUTATION)]  # left bone = its right twin
    lengths = reference * factor
    height = rng.uniform(*config.height_range, batch)[..., None]
    lengths[..., list(_HIPS)] = 0                          # hip width is set on its own, after scaling
    lengths = lengths * standing_height_to_chain(height) / chain_length(lengths)[..., None]
    lengths[..., list(_HIPS)] = rng.uniform(*config.hip_width_range, batch)[..., None] * height
    return lengths


def set_bone_lengths(joints: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Joints (T,17,3) rebuilt with bone lengths (17,) and the original bone directions (root kept)."""
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0]
    for c in range(1, NUM_JOINTS):  # PARENTS is topologically sorted (parent index < child index)
        p = PARENTS[c]
        bone = joints[:, c] - joints[:, p]
        out[:, c] = out[:, p] + bone * (lengths[c] / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9))
    return out


def augment_bone_lengths(joints: np.ndarray, rng: np.random.Generator, config: BoneConfig = BoneConfig()) -> np.ndarray:
    """A sequence (T,17,3) (world, Y up, floor y = 0) with new random proportions.

    The pelvis path scales with the leg length (height above the floor and distance travelled), so
    feet stay near the floor and strides match the new legs."""
    reference = np.median(bone_lengths(joints), axis=0)           # (17,) robust to mocap noise
    lengths = sample_lengths(reference, rng, config)
    leg = lambda L: np.mean([L[a] + L[k] for a, k, _ in LEGS])
    s = leg(lengths) / max(leg(reference), 1e-6)
    root = joints[:, 0]
    new_root = root[:1] * [1.0, 0.0, 1.0] + (root - root[:1] * [1.0, 0.0, 1.0]) * s
    out = set_bone_lengths(joints, lengths)
    return (out + (new_root - root)[:, None]).astype(joints.dtype)
