"""3D pose metrics (batched, torch or numpy in; float64 torch out): MPJPE, P-MPJPE, N-MPJPE,
MPJVE, PCK and AUC.

Poses are (..., J, 3) in metres, root-relative or not (every metric here compares joints of one
frame, and the aligned variants remove the offset themselves). Each error function returns the
per-joint Euclidean error (..., J) so callers can average over frames, joints or clips as they
need; `mpjpe(...)` etc. are the scalar means. Errors stay in metres; reports multiply by 1000.
"""
import numpy as np
import torch

PCK_THRESHOLD = 0.150                             # m, the usual 3DPCK threshold
AUC_THRESHOLDS = np.linspace(0.0, 0.150, 31)      # m, 0..150 mm in 5 mm steps


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).double()


# -----------------------------------------------------------------------------
# alignments

def scale_align(pred, target) -> torch.Tensor:
    """Least-squares scale of each frame's pred onto target (N-MPJPE): s = <p, t> / <p, p>."""
    pred, target = _as_tensor(pred), _as_tensor(target)
    num = (pred * target).sum(dim=(-1, -2), keepdim=True)
    den = (pred * pred).sum(dim=(-1, -2), keepdim=True).clamp_min(1e-12)
    return pred * (num / den)


def procrustes_align(pred, target) -> torch.Tensor:
    """Similarity transform (scale, rotation, translation) of each frame's pred onto target, via SVD."""
    pred, target = _as_tensor(pred), _as_tensor(target)
    mu_p, mu_t = pred.mean(dim=-2, keepdim=True), target.mean(dim=-2, keepdim=True)
    p, t = pred - mu_p, target - mu_t                                        # (..., J, 3)
    h = p.transpose(-1, -2) @ t                                              # (..., 3, 3)
    u, s, vt = torch.linalg.svd(h)
    # Reflection fix: flip the last singular direction when det(V U^T) < 0, so R is a rotation.
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    s = torch.cat([s[..., :2], s[..., 2:] * d[..., None]], dim=-1)
    vt = torch.cat([vt[..., :2, :], vt[..., 2:, :] * d[..., None, None]], dim=-2)
    r = vt.transpose(-1, -2) @ u.transpose(-1, -2)                           # (..., 3, 3) p -> t
    scale = s.sum(dim=-1) / (p * p).sum(dim=(-1, -2)).clamp_min(1e-12)      # (...)
    return scale[..., None, None] * p @ r.transpose(-1, -2) + mu_t


# -----------------------------------------------------------------------------
# per-joint errors (..., J), metres

def joint_errors(pred, target) -> torch.Tensor:
    """Euclidean distance per joint (..., J)."""
    return torch.linalg.vector_norm(_as_tensor(pred) - _as_tensor(target), dim=-1)


def p_joint_errors(pred, target) -> torch.Tensor:
    return joint_errors(procrustes_align(pred, target), target)


def n_joint_errors(pred, target) -> torch.Tensor:
    return joint_errors(scale_align(pred, target), target)


def velocity_joint_errors(pred, target, time_dim: int = -3) -> torch.Tensor:
    """Error of the frame-to-frame displacement (m per frame) along time_dim: (..., T-1, ..., J)."""
    dp = torch.diff(_as_tensor(pred), dim=time_dim)
    dt = torch.diff(_as_tensor(target), dim=time_dim)
    return torch.linalg.vector_norm(dp - dt, dim=-1)


# -----------------------------------------------------------------------------
# scalar summaries (metres / fractions)

def mpjpe(pred, target) -> float:
    return joint_errors(pred, target).mean().item()


def p_mpjpe(pred, target) -> float:
    return p_joint_errors(pred, target).mean().item()


def n_mpjpe(pred, target) -> float:
    return n_joint_errors(pred, target).mean().item()


def mpjve(pred, target, time_dim: int = -3) -> float:
    """Mean per-joint velocity error, m per frame (multiply by fps for m/s). Needs T >= 2."""
    return velocity_joint_errors(pred, target, time_dim).mean().item()


def pck(errors, threshold: float = PCK_THRESHOLD) -> float:
    """Fraction of joint errors (any shape, metres) below threshold."""
    return (_as_tensor(errors) <= threshold).double().mean().item()


def auc(errors, thresholds=AUC_THRESHOLDS) -> float:
    """Mean PCK over the thresholds (area under the PCK curve, normalised to [0, 1])."""
    e = _as_tensor(errors).reshape(-1)
    return float(np.mean([pck(e, t) for t in thresholds]))


def per_joint(errors) -> np.ndarray:
    """Mean error of each joint (J,), averaging every leading axis of (..., J)."""
    e = _as_tensor(errors)
    return e.reshape(-1, e.shape[-1]).mean(dim=0).numpy()


def summarize(pred, target) -> dict[str, float]:
    """Every frame metric for (N, J, 3) pose pairs, in mm (PCK/AUC as fractions)."""
    e = joint_errors(pred, target)
    return {
        "mpjpe_mm": 1000 * e.mean().item(),
        "p_mpjpe_mm": 1000 * p_joint_errors(pred, target).mean().item(),
        "n_mpjpe_mm": 1000 * n_joint_errors(pred, target).mean().item(),
        "pck150": pck(e),
        "auc": auc(e),
    }
