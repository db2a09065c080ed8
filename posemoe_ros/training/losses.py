"""Training losses: MPJPE + scale-aligned N-MPJPE + velocity, plus PoseMoE's per-expert auxiliary terms.

All take (B, T, J, 3) root-relative camera-frame poses in metres. The auxiliary terms supervise the
2D-pose expert (aux["xy"], (B,T,J,2)) with the target's x, y and the depth expert (aux["z"],
(B,T,J,1)) with the target's z, so each stream learns its own job before the decoder mixes them;
baselines return no aux and those terms are skipped.
"""
from dataclasses import dataclass

import torch


@dataclass
class LossWeights:
    mpjpe: float = 1.0
    n_mpjpe: float = 0.5       # scale-free shape term, helps where the absolute scale is ambiguous
    velocity: float = 0.5      # temporal smoothness (frame-to-frame displacement)
    aux_xy: float = 0.1        # PoseMoE 2D-pose expert
    aux_z: float = 0.1         # PoseMoE depth expert


def mpjpe_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


def n_mpjpe_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # per-frame least-squares scale of pred onto target, then MPJPE
    num = (pred * target).sum(dim=(-1, -2), keepdim=True)
    den = (pred * pred).sum(dim=(-1, -2), keepdim=True).clamp_min(1e-8)
    return mpjpe_loss(pred * (num / den), target)


def velocity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    dp, dt = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]   # (B, T-1, J, 3)
    return torch.linalg.vector_norm(dp - dt, dim=-1).mean()


def lifting_loss(pred: torch.Tensor, target: torch.Tensor, aux: dict | None,
                 w: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms with non-zero weight; returns (total, {term: unweighted value})."""
    terms = {"mpjpe": (w.mpjpe, lambda: mpjpe_loss(pred, target)),
             "n_mpjpe": (w.n_mpjpe, lambda: n_mpjpe_loss(pred, target)),
             "velocity": (w.velocity, lambda: velocity_loss(pred, target))}
    aux = aux or {}
    if "xy" in aux:
        terms["aux_xy"] = (w.aux_xy, lambda: mpjpe_loss(aux["xy"], target[..., :2]))
    if "z" in aux:
        terms["aux_z"] = (w.aux_z, lambda: (aux["z"] - target[..., 2:]).abs().mean())
    total, parts = pred.new_zeros(()), {}
    for name, (weight, fn) in terms.items():
        if weight:
            value = fn()
            total = total + weight * value
            parts[name] = value.item()
    parts["total"] = total.item()
    return total, parts
