"""Absolute position of a lifted skeleton: the camera-frame translation of its root (pelvis).

The model predicts root-relative joints P_j = (X_j, Y_j, Z_j). The translation T = (Tx, Ty, Tz)
that places them in the camera makes them project onto the detected normalised coordinates (x_j, y_j):

    x_j (Z_j + Tz) = X_j + Tx,   y_j (Z_j + Tz) = Y_j + Ty

which is linear in T, so a weighted least-squares solve (3x3 normal equations per person) gives it.
The equations measure the error in metres at each joint's depth; one reweighting pass by
1 / (Z_j + Tz)^2 turns that into (first-order) reprojection error in normalised image units.
With a depth image the depth is known instead: Tz is fixed and only Tx, Ty are solved.
"""
import numpy as np

from posemoe_ros.skeleton import JOINT_INDEX as J

MIN_JOINTS = 3  # confident joints needed to trust a solve (4 equations would do; 3 adds margin)
TZ_RANGE = (0.1, 50.0)  # m; a solve outside is clamped and Tx, Ty re-solved at the clamped depth
TORSO_JOINTS = tuple(J[n] for n in ("pelvis", "r_hip", "l_hip", "spine", "thorax", "l_shoulder", "r_shoulder"))
TORSO_DEPTH_OFFSET = 0.1  # m from the torso's visible surface back to the pelvis joint (body centre)


def _solve_xy(pose_rel, xy, w, tz):
    """Tx, Ty for fixed Tz (P,): weighted means of x_j (Z_j + Tz) - X_j. -> (P,3)."""
    scaled = xy * (pose_rel[..., 2:3] + tz[:, None, None]) - pose_rel[..., :2]  # (P,17,2)
    txy = (w[..., None] * scaled).sum(1) / np.maximum(w.sum(1), 1e-12)[:, None]
    return np.concatenate([txy, tz[:, None]], -1)


def solve_root_translation(pose_rel: np.ndarray, xy_norm: np.ndarray, weights: np.ndarray,
                           depth_hint: np.ndarray | None = None, refine: bool = True):
    """Root translation of each person minimising the weighted reprojection error.

    pose_rel (P,17,3) root-relative camera-frame metres, xy_norm (P,17,2) normalised camera
    coordinates, weights (P,17) (confidences; 0 = ignore), depth_hint (P,) metres or None
    (NaN entries fall back to the reprojection solve).
    Returns (T (P,3), valid (P,) bool). Rows with fewer than MIN_JOINTS weighted joints or a
    degenerate system are NaN and invalid; Tz is clamped to TZ_RANGE.
    """
    pose_rel = np.asarray(pose_rel, np.float64)
    xy = np.asarray(xy_norm, np.float64)
    w = np.asarray(weights, np.float64)
    ok = np.isfinite(pose_rel).all(-1) & np.isfinite(xy).all(-1) & np.isfinite(w) & (w > 0)  # (P,17)
    w = np.where(ok, w, 0.0)
    pose_rel, xy = np.where(ok[..., None], pose_rel, 0.0), np.where(ok[..., None], xy, 0.0)
    P = pose_rel.shape[0]
    valid = ok.sum(1) >= MIN_JOINTS

    # Rows per joint: [-1, 0, x_j] T = X_j - x_j Z_j and [0, -1, y_j] T = Y_j - y_j Z_j.
    A = np.zeros(pose_rel.shape[:2] + (2, 3))  # (P,17,2,3)
    A[..., 0, 0] = A[..., 1, 1] = -1.0
    A[..., 2] = xy
    b = pose_rel[..., :2] - xy * pose_rel[..., 2:3]  # (P,17,2)

    def solve(joint_w):
        AtA = np.einsum("pj,pjei,pjek->pik", joint_w, A, A)  # (P,3,3)
        Atb = np.einsum("pj,pjei,pje->pi", joint_w, A, b)  # (P,3)
        with np.errstate(divide="ignore", invalid="ignore"):
            good = valid & (np.linalg.cond(AtA) < 1e10)
        AtA[~good], Atb[~good] = np.eye(3), 0.0  # keep the batched solve from raising
        return np.linalg.solve(AtA, Atb[..., None])[..., 0], good

    T, good = solve(w)
    if refine:
        depth = np.maximum(pose_rel[..., 2] + np.clip(T[:, 2:3], *TZ_RANGE), TZ_RANGE[0])  # (P,17)
        T, good = solve(w / depth**2)
    T[~good] = np.nan

    # Clamped depths and depth hints: fix Tz, re-solve Tx, Ty in closed form.
    tz_fixed = np.full(P, np.nan)
    clamped = good & ((T[:, 2] < TZ_RANGE[0]) | (T[:, 2] > TZ_RANGE[1]))
    tz_fixed[clamped] = np.clip(T[clamped, 2], *TZ_RANGE)
    if depth_hint is not None:
        hint = np.asarray(depth_hint, np.float64).reshape(P)
        use = np.isfinite(hint) & (ok.sum(1) >= 1)
        tz_fixed[use] = np.clip(hint[use], *TZ_RANGE)
        good = good | use
    fixed = np.isfinite(tz_fixed)
    if fixed.any():
        T[fixed] = _solve_xy(pose_rel[fixed], xy[fixed], w[fixed], tz_fixed[fixed])
    T[~good] = np.nan
    return T, good


def robust_torso_depth(depth_image: np.ndarray, uv: np.ndarray, conf: np.ndarray, radius: int = 2,
                       min_samples: int = 10, offset: float = TORSO_DEPTH_OFFSET) -> float:
    """Depth of the body centre (pelvis) from an aligned depth image, metres; NaN if unsure.

    depth_image (H,W) metres (NaN / 0 invalid), uv (17,2) pixels of the H36M joints, conf (17,).
    Pools the valid samples of (2 radius + 1)^2 patches around the confident torso joints and takes
    their median (robust to patches that spill onto the background), then adds `offset` from the
    visible torso surface back to the body centre. Fewer than min_samples valid samples -> NaN.
    """
    H, W = depth_image.shape[:2]
    uv = np.asarray(uv, np.float64)[list(TORSO_JOINTS)]
    use = (np.asarray(conf)[list(TORSO_JOINTS)] > 0) & np.isfinite(uv).all(-1)
    if not use.any():
        return float("nan")
    centre = np.rint(uv[use]).astype(np.int64)  # (N,2) u, v
    d = np.arange(-radius, radius + 1)
    u = (centre[:, 0, None, None] + d[None, None, :]).repeat(len(d), 1)  # (N,S,S)
    v = (centre[:, 1, None, None] + d[None, :, None]).repeat(len(d), 2)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    samples = np.asarray(depth_image[v[inside], u[inside]], np.float64)
    samples = samples[np.isfinite(samples) & (samples > 0)]
    if samples.size < min_samples:
        return float("nan")
    return float(np.median(samples) + offset)


def depth_to_metres(array: np.ndarray, encoding: str) -> np.ndarray:
    """Depth image -> (H,W) float32 metres with NaN where invalid.

    16UC1: millimetres, 0 = invalid. 32FC1: metres, 0, NaN, inf or negative = invalid.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"depth image must be (H, W), got shape {a.shape}")
    if encoding == "16UC1":
        if a.dtype != np.uint16:
            raise ValueError(f"16UC1 depth must be uint16, got {a.dtype}")
        out = a.astype(np.float32) * np.float32(1e-3)
    elif encoding == "32FC1":
        if a.dtype != np.float32:
            raise ValueError(f"32FC1 depth must be float32, got {a.dtype}")
        out = a.astype(np.float32, copy=True)
    else:
        raise ValueError(f"depth encoding '{encoding}' is neither 16UC1 (mm) nor 32FC1 (m)")
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out
