"""REP-155 body frame of a 3D skeleton: origin at the hip midpoint, x out of the chest (forward),
y to the body's left, z up the spine; right-handed and orthonormal.

z is exact (hip midpoint -> thorax); y is the hip left-right direction (r_hip -> l_hip) with its
z component removed (Gram-Schmidt), falling back to the shoulders when the hips are degenerate;
x = y cross z. All functions take a single pose (17,3) or a batch (...,17,3).
"""
import numpy as np
from scipy.spatial.transform import Rotation

from posemoe_ros.skeleton import JOINT_INDEX as J


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def body_frame(pose_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pose_abs (...,17,3) camera-frame metres -> origin (...,3), rotation (...,3,3).

    The rotation's columns are the body x, y, z axes in the camera frame, so
    p_camera = origin + rotation @ p_body.
    """
    pose = np.asarray(pose_abs, np.float64)
    origin = 0.5 * (pose[..., J["l_hip"], :] + pose[..., J["r_hip"], :])
    z = _unit(pose[..., J["thorax"], :] - origin)

    def across(left, right):  # left-right direction orthogonal to z, and its length before normalising
        v = pose[..., J[left], :] - pose[..., J[right], :]
        v = v - (v * z).sum(-1, keepdims=True) * z
        return v, np.linalg.norm(v, axis=-1, keepdims=True)

    y_hip, n_hip = across("l_hip", "r_hip")
    y_sh, _ = across("l_shoulder", "r_shoulder")
    y = _unit(np.where(n_hip > 1e-6, y_hip, y_sh))
    x = np.cross(y, z)
    return origin, np.stack([x, y, z], axis=-1)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(...,3,3) rotation matrices -> (...,4) quaternions (x, y, z, w), w >= 0."""
    R = np.asarray(rotation, np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    q *= np.where(q[:, 3:] < 0, -1.0, 1.0)  # one canonical sign
    return q.reshape(R.shape[:-2] + (4,))


def joint_offsets_in_body(pose_abs: np.ndarray, origin: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Joints (...,17,3) in the body frame: rotation^T (p - origin)."""
    rel = np.asarray(pose_abs, np.float64) - np.asarray(origin)[..., None, :]
    return np.einsum("...jc,...ck->...jk", rel, rotation)
