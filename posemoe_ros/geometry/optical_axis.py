"""Turn each person's view onto the optical axis before lifting, and the result back.

The lifting network was trained with virtual cameras aimed at the person (docs/data.md). A person
near the image border is seen off-axis: their normalised 2D pose is sheared by perspective, and
the model shrinks them (so the root fit puts them too close). Rotating the camera about its
centre changes no pixel's ray, only the coordinates: we rotate every ray of a person's window so
the pelvis ray lies on +z, lift in that canonical view, and rotate the 3D pose back.
"""
import numpy as np

Z_AXIS = np.array([0.0, 0.0, 1.0])


def rotation_to_axis(xy: np.ndarray) -> np.ndarray:
    """(N,3,3) rotations taking the rays through normalised points xy (N,2) onto +z.

    The smallest rotation (about the axis ray x z), so the image's up stays as up as it can.
    """
    ray = np.concatenate([xy, np.ones_like(xy[:, :1])], -1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)                # (N,3)
    axis = np.cross(ray, Z_AXIS)                                       # (N,3), |axis| = sin
    s = np.linalg.norm(axis, axis=-1)[:, None, None]
    c = ray[:, 2][:, None, None]                                        # cos = ray . z
    k = np.zeros((len(xy), 3, 3))                                      # cross-product matrix of axis
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    # Rodrigues with the unnormalised axis: I + K + K^2 (1 - cos) / sin^2; the on-axis case is I.
    factor = np.divide(1.0 - c, s**2, out=np.full_like(s, 0.5), where=s > 1e-12)
    return np.eye(3) + k + k @ k * factor


def rotate_normalized(xy: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Normalised points (N,...,2) seen by a camera rotated by R (N,3,3); same shape."""
    shape = xy.shape
    pts = xy.reshape(len(xy), -1, 2)
    rays = np.concatenate([pts, np.ones_like(pts[..., :1])], -1) @ R.transpose(0, 2, 1)  # (N,M,3)
    # Rays behind the rotated camera cannot happen for a person in view (< 90 deg off the pelvis).
    return (rays[..., :2] / np.maximum(rays[..., 2:], 1e-6)).reshape(shape)


def rotate_points_back(points: np.ndarray, R: np.ndarray) -> np.ndarray:
    """3D points (N,...,3) from the rotated camera's frame back to the original: R^T p."""
    shape = points.shape
    return (points.reshape(len(points), -1, 3) @ R).reshape(shape)


def view_on_axis(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame of model inputs (..., 17, 3) = (x_n, y_n, conf) seen by a camera turned so that
    its confidence-weighted joint centre lies on the optical axis -> (frames, R (..., 3, 3)).

    Per frame, so a frame's view never depends on the frames around it (what a streaming model
    needs); the streaming models are trained on inputs and targets turned the same way. Missing
    joints (conf 0) stay (0, 0, 0). The 3D of the turned view goes back with rotate_points_back.
    """
    frames = np.asarray(frames)
    shape = frames.shape
    flat = frames.reshape(-1, shape[-2], 3)
    conf = flat[..., 2:].astype(np.float64)
    centre = (flat[..., :2] * conf).sum(1) / np.maximum(conf.sum(1), 1e-6)           # (N,2)
    R = rotation_to_axis(centre)                                                       # (N,3,3)
    out = flat.copy()
    xy = rotate_normalized(flat[..., :2].astype(np.float64), R)
    out[..., :2] = np.where(conf > 0, xy, 0.0)
    return out.reshape(shape), R.reshape(shape[:-2] + (3, 3))


def rotate_points(points: np.ndarray, R: np.ndarray) -> np.ndarray:
    """3D points (..., M, 3) into the frame of a camera rotated by R (..., 3, 3): R p."""
    return points @ np.swapaxes(R, -1, -2)
