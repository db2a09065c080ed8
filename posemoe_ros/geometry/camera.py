"""Pinhole camera helpers shared by training (synthetic cameras) and the ROS node (CameraInfo).

Conventions: the camera frame is the REP-103 optical frame (x right, y down, z forward), metres;
K is the 3x3 intrinsics matrix; `dist` holds OpenCV distortion coefficients (plumb_bob k1 k2 p1 p2 k3,
or the 8-coefficient rational polynomial). Normalised coordinates are (u - cx)/fx, (v - cy)/fy of the
undistorted image: the model's input (contract 1).
"""
import cv2
import numpy as np


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The 3x3 pinhole matrix K (float64)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def world_to_camera(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """x_cam = R @ x_world + t for points (..., 3); R (3,3) rotates world axes into the camera frame."""
    return points @ np.asarray(R, points.dtype).T + np.asarray(t, points.dtype)


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of points (..., 3) in the optical frame to pixels (..., 2) (no distortion).

    Points at or behind the camera plane (z <= 1e-6) give NaN."""
    points_cam = np.asarray(points_cam)
    z = points_cam[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(z > 1e-6, points_cam[..., :2] / z, np.nan)
    return normalized_to_pixels(xy, K)


# cv2.undistortPoints stops after 5 iterations (errors ~1e-5 at wide-angle image corners); iterate to convergence
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)


def _undistort(uv: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(N,2) pixels -> (N,2) undistorted normalised coordinates, iterated to convergence."""
    pts = uv.reshape(-1, 1, 2)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4.x
        return cv2.undistortPointsIter(pts, K, dist, np.eye(3), np.eye(3), _UNDISTORT_CRITERIA).reshape(-1, 2)
    return cv2.undistortPoints(pts, K, dist, criteria=_UNDISTORT_CRITERIA).reshape(-1, 2)  # OpenCV 5


def _has_distortion(dist) -> bool:
    return dist is not None and np.any(np.asarray(dist) != 0)


def pixels_to_normalized(uv: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """Pixels (..., 2) -> undistorted normalised coordinates (..., 2); NaN in, NaN out.

    Without distortion (dist None or all zero) this is the affine map ((u - cx)/fx, (v - cy)/fy);
    otherwise cv2.undistortPoints (iterative inverse of the OpenCV distortion model)."""
    uv = np.asarray(uv, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if not _has_distortion(dist):
        return (uv - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]
    flat = uv.reshape(-1, 2)
    out = np.full_like(flat, np.nan)
    ok = np.isfinite(flat).all(-1)
    if ok.any():
        out[ok] = _undistort(flat[ok], K, np.asarray(dist, np.float64))
    return out.reshape(uv.shape)


def normalized_to_pixels(xy: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """Undistorted normalised coordinates (..., 2) -> pixels (..., 2), applying distortion if given."""
    xy = np.asarray(xy, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if not _has_distortion(dist):
        return xy * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
    flat = xy.reshape(-1, 2)
    out = np.full_like(flat, np.nan)
    ok = np.isfinite(flat).all(-1)
    if ok.any():
        pts = np.concatenate([flat[ok], np.ones((ok.sum(), 1))], -1)  # rays on the z = 1 plane
        uv, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, np.asarray(dist, np.float64))
        out[ok] = uv.reshape(-1, 2)
    return out.reshape(xy.shape)
