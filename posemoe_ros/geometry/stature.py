"""Body size: bone lengths, the stature they imply, and scaling a lifted skeleton to an assumed stature.

A monocular lifter cannot see how big a person is: 1.6 m at 4 m and 2.0 m at 5 m give the same
image. The shipped model's stature barely follows the truth (correlation 0.14 on bone-augmented
test windows, docs/results.md) and comes out near 1.6 m, with limbs pulled in, so its root depth
was 5-10 % too near. The lifter therefore scales each skeleton to a stature the user sets
(`body_height`); the root depth error then follows from how far the person is from that height.
"""
import numpy as np

from posemoe_ros.skeleton import PARENTS

ANKLE_TO_SOLE = 0.06     # floor to ankle joint, m
STATURE_PER_HEAD = 1.07  # the mocap "head" joint sits at about 93 % of a person's stature
LEGS = ((3, 2, 1), (6, 5, 4))       # ankle -> knee -> hip, per side
TRUNK = (7, 8, 9, 10)               # spine, thorax, neck_nose, head: pelvis up to the head top
MIN_STATURE = 0.3  # m; a skeleton whose bones add up to less is degenerate and left unscaled
MAX_STATURE = 2.5  # m; no assumed body height beyond this


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 17) length of the bone ending at each joint (0 for the root)."""
    parents = np.array([max(p, 0) for p in PARENTS])
    return np.linalg.norm(joints - joints[..., parents, :], axis=-1)


def chain_length(lengths: np.ndarray) -> np.ndarray:
    """Ankle -> knee -> hip (mean of both legs) plus pelvis -> spine -> thorax -> neck -> head."""
    leg = np.mean([lengths[..., a] + lengths[..., k] for a, k, _ in LEGS], axis=0)
    return leg + lengths[..., list(TRUNK)].sum(-1)


def standing_height(lengths: np.ndarray) -> np.ndarray:
    """Stature estimate (m) from bone lengths (..., 17): (floor -> ankle -> ... -> head joint) * 1.07.

    Gives about 1.50 m for the Bandai skeleton, 1.58-1.68 m for the CMU subjects. Pose-independent:
    a sitting or bending person has the stature of the same person standing."""
    return standing_height_of_chain(chain_length(lengths))


def standing_height_of_chain(chain):
    return (chain + ANKLE_TO_SOLE) * STATURE_PER_HEAD


def standing_height_to_chain(stature):
    """The ankle-to-head chain length of a person of this stature (m), the inverse of the above."""
    return stature / STATURE_PER_HEAD - ANKLE_TO_SOLE


def scale_to_stature(pose_rel: np.ndarray, stature) -> np.ndarray:
    """Root-relative skeletons (P,17,3) scaled about the root so that standing_height = stature
    (m, one for all or (P,)).

    Bone directions are kept. Skeletons with non-finite joints or a stature below MIN_STATURE come
    back unchanged (the root solve decides what to do with them)."""
    pose_rel = np.asarray(pose_rel)
    with np.errstate(invalid="ignore"):
        chain = chain_length(bone_lengths(pose_rel.astype(np.float64)))  # (P,) ankle to head joint
        ok = np.isfinite(chain) & (standing_height_of_chain(chain) >= MIN_STATURE)
    scale = np.where(ok, standing_height_to_chain(stature) / np.where(ok, chain, 1.0), 1.0)
    return (pose_rel * scale[:, None, None]).astype(pose_rel.dtype)


def body_height_error(height: float) -> str | None:
    """Why `body_height` (m; 0 = the model's own size) cannot be used, or None."""
    if height and not MIN_STATURE <= height <= MAX_STATURE:
        return f"body_height={height} m is no person's stature: give {MIN_STATURE}-{MAX_STATURE} m, or 0"
    return None
