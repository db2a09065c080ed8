"""Streaming inference: one new frame per step, at the cost of one frame, exactly.

Each temporal attention of PoseMoE / the entangled baseline reads the keys and values of the last
W-1 frames of the layer below plus the current frame's (models/attention.py). Those keys and
values depend only on frames that came before, so they are cached when computed and never
recomputed:

    past_kv (B, A, J, W-1, 2C)  for each of the model's A temporal attentions, per joint, the
                                projected [key, value] of up to W-1 past frames (a ring: any order)
    ages    (B, W-1) int64      how many frames ago each cached slot was computed (1 .. W-1);
                                W marks an empty slot (a new or reset track)

`StreamingStep(model)(x, past_kv, ages, delay)` lifts the new frame x (B,J,3) and returns the pose
of frame t-delay (B,J,3) and the new frame's keys/values (B,A,J,2C), which the caller writes into
its ring in place of the oldest slot. Output delay: the last temporal layers have a bias and a
query offset per delay k (`max_lookahead`), so with delay k the step answers for the frame k
steps back from frames up to now; training samples k per batch, so one model serves every k.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from posemoe_ros.models.attention import TemporalBlock


class TemporalMemory:
    """The past keys/values the temporal attentions of one step read, in the order they run."""

    def __init__(self, past_kv: torch.Tensor, ages: torch.Tensor):
        self.past_kv, self.ages = past_kv, ages         # (B, A, J, W-1, 2C), (B, W-1)
        self.new_kv: list[torch.Tensor] = []             # (B, J, 2C) per attention, as they run

    def attend(self, kv: torch.Tensor, bias: torch.Tensor):
        """kv (B*J, 1, 2C) of the current frame, bias (h, W) by age -> all keys (B*J, W, 2C), bias (B*J, h, 1, W)."""
        B, A, J, P, C2 = self.past_kv.shape
        a = len(self.new_kv)
        self.new_kv.append(kv.reshape(B, J, C2))
        keys = torch.cat([self.past_kv[:, a].reshape(B * J, P, C2), kv], dim=1)
        ages = torch.cat([self.ages, torch.zeros_like(self.ages[:, :1])], dim=1)          # (B, W), now = 0
        table = F.pad(bias, (0, 1), value=float("-inf"))                                  # age W: empty slot
        b = table[:, ages].transpose(0, 1)                                                 # (B, h, W)
        b = b[:, None, :, None, :].expand(B, J, b.shape[1], 1, b.shape[2]).reshape(B * J, -1, 1, P + 1)
        return keys, b

    def collected(self) -> torch.Tensor:
        return torch.stack(self.new_kv, dim=1)            # (B, A, J, 2C)


def is_streaming(model: nn.Module) -> bool:
    return any(isinstance(m, TemporalBlock) for m in model.modules())


def cache_shape(model: nn.Module) -> tuple[int, int, int, int]:
    """(A, J, W-1, 2C) of one person's cache."""
    cfg = model.config
    attentions = sum(isinstance(m, TemporalBlock) for m in model.modules())
    return attentions, cfg.num_joints, cfg.num_frames - 1, 2 * cfg.dim


def empty_cache(model: nn.Module, batch: int, dtype=torch.float32, device="cpu"):
    """(past_kv zeros, ages all empty) for `batch` new tracks."""
    A, J, P, C2 = cache_shape(model)
    return (torch.zeros(batch, A, J, P, C2, dtype=dtype, device=device),
            torch.full((batch, P), P + 1, dtype=torch.int64, device=device))


class StreamingStep(nn.Module):
    """The model's one-frame step as a module (what ONNX exports): see the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, x, past_kv, ages, delay):
        memory = TemporalMemory(past_kv, ages)
        pose = self.model(x[:, None], delay=delay, memory=memory)[:, 0]   # (B, J, 3)
        return pose, memory.collected()


@torch.no_grad()
def stream(model: nn.Module, x: torch.Tensor, delay: int = 0) -> torch.Tensor:
    """Run sequences x (B,T,J,3) frame by frame through the step (the node's path) -> (B,T,J,3).

    Output t is the pose of frame t-delay (rows t < delay have no such frame and are left NaN), as
    in model(x, delay=delay)."""
    step = StreamingStep(model).eval()
    B, T = x.shape[:2]
    past, ages = empty_cache(model, B, x.dtype, x.device)
    P = past.shape[3]
    out = torch.full_like(x, float("nan"))
    d = torch.tensor(delay)
    for t in range(T):
        pose, new = step(x[:, t], past, ages, d)
        slot = t % P                                   # the ring's oldest slot
        past[:, :, :, slot] = new
        ages = torch.where(ages <= P, ages + 1, ages)
        ages[:, slot] = 1
        if t >= delay:
            out[:, t] = pose
    return out
