"""Transformer building blocks shared by PoseMoE and the entangled baseline.

All blocks are pre-norm (x + f(LN(x))) and work on token sequences (N, L, C). The spatial /
temporal wrappers fold a pose feature map (B, T, J, C) into such sequences: spatial attention
runs across the J joints of each frame, temporal attention across the frames of each joint.

Temporal attention is causal over a band: query frame t reads key frames t-W+1 .. t (their age
t - s is 0 .. W-1, W = `window`). Time enters only as a learned bias per head and age (a relative
position), never as an absolute frame embedding, so the features of a frame do not depend on
where it sits in a sequence. Hence one forward over a whole sequence and a frame-by-frame
forward that keeps each temporal attention's keys and values of the last W-1 frames
(`TemporalMemory`, models/streaming.py) compute the same thing: streaming is exact.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Attention(nn.Module):
    """Multi-head attention of queries x (N,L,C) over keys/values kv (N,S,2C) = self.kv(context).

    bias: additive attention bias broadcastable to (N, heads, L, S); -inf masks a key out.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        assert dim % heads == 0, f"dim {dim} not divisible by heads {heads}"
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x, kv, bias=None):
        N, L, C = x.shape
        S = kv.shape[1]
        q = self.q(x).view(N, L, self.heads, C // self.heads).transpose(1, 2)                 # (N, h, L, d)
        k, v = kv.view(N, S, 2, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)           # (N, h, S, d)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(N, L, C)
        return self.proj_drop(self.proj(y))


class Block(nn.Module):
    """Pre-norm self-attention + MLP on (N, L, C): spatial attention across the joints of a frame."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, self.attn.kv(h))
        return x + self.mlp(self.ln2(x))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention (x reads context) + MLP on (N, L, C), across the joints of a frame."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x, context):
        x = x + self.attn(self.ln_q(x), self.attn.kv(self.ln_kv(context)))
        return x + self.mlp(self.ln2(x))


class TemporalBlock(nn.Module):
    """Pre-norm banded causal attention across frames + MLP, on (N, L, C) frame sequences of one joint.

    Self-attention when context is None, else x reads context (the same frames of another stream).
    The bias per head and age is learned; `delays` > 1 (only the network's last temporal layers)
    gives each output delay k its own bias and query offset, so the layer can answer for frame t-k
    from frames up to t: the lookahead (models/streaming.py). Frames older than W-1 are masked.
    memory: None for a whole sequence; a TemporalMemory for one streaming step (L = 1).
    """

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 cross: bool = False, delays: int = 1):
        super().__init__()
        self.window = window
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        self.age_bias = nn.Parameter(torch.zeros(delays, heads, window))      # [delay, head, age]
        self.delay_query = nn.Parameter(torch.zeros(delays, dim)) if delays > 1 else None

    def forward(self, x, context=None, memory=None, delay=0):
        q = self.ln_q(x)
        kv = self.attn.kv(q if self.ln_kv is None else self.ln_kv(context))   # (N, L, 2C)
        if self.delay_query is not None:
            q = q + self.delay_query[delay]
        bias = self.age_bias[delay]                                           # (h, W)
        if memory is None:                                                    # a whole sequence
            L = x.shape[1]
            age = torch.arange(L, device=x.device)[:, None] - torch.arange(L, device=x.device)[None]  # (L, L)
            in_band = (age >= 0) & (age < self.window)
            bias = torch.where(in_band, bias[:, age.clamp(0, self.window - 1)], float("-inf"))    # (h, L, L)
        else:                                                                 # one frame, with the past's kv
            kv, bias = memory.attend(kv, bias)                                # (N, W, 2C), (N, h, 1, W)
        x = x + self.attn(q, kv, bias)
        return x + self.mlp(self.ln2(x))


# ---- folding (B, T, J, C) pose features into attention sequences ------------------------------

def to_spatial(x):   # (B, T, J, C) -> (B*T, J, C)
    B, T, J, C = x.shape
    return x.reshape(B * T, J, C)


def from_spatial(x, B: int, T: int):   # (B*T, J, C) -> (B, T, J, C)
    return x.reshape(B, T, x.shape[1], x.shape[2])


def to_temporal(x):  # (B, T, J, C) -> (B*J, T, C)
    B, T, J, C = x.shape
    return x.permute(0, 2, 1, 3).reshape(B * J, T, C)


def from_temporal(x, B: int, J: int):  # (B*J, T, C) -> (B, T, J, C)
    return x.reshape(B, J, x.shape[1], x.shape[2]).permute(0, 2, 1, 3)


class STBlock(nn.Module):
    """Spatial block (joints of a frame) then temporal block (frames of a joint), on (B, T, J, C)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 delays: int = 1):
        super().__init__()
        self.spatial = Block(dim, heads, mlp_ratio, dropout)
        self.temporal = TemporalBlock(dim, heads, window, mlp_ratio, dropout, delays=delays)

    def forward(self, x, memory=None, delay=0):
        B, T, J, _ = x.shape
        x = from_spatial(self.spatial(to_spatial(x)), B, T)
        return from_temporal(self.temporal(to_temporal(x), memory=memory, delay=delay), B, J)


class STCrossBlock(nn.Module):
    """Cross-attention of x onto context in the spatial then temporal dimension, on (B, T, J, C)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 delays: int = 1):
        super().__init__()
        self.spatial = CrossBlock(dim, heads, mlp_ratio, dropout)
        self.temporal = TemporalBlock(dim, heads, window, mlp_ratio, dropout, cross=True, delays=delays)

    def forward(self, x, context, memory=None, delay=0):
        B, T, J, _ = x.shape
        x = from_spatial(self.spatial(to_spatial(x), to_spatial(context)), B, T)
        return from_temporal(self.temporal(to_temporal(x), to_temporal(context), memory, delay), B, J)


class PoseEmbedding(nn.Module):
    """Linear embedding of per-joint inputs plus a learned joint embedding (no frame position: see above).

    scale_input: each frame's keypoints are centred on their confidence-weighted mean and divided by
    their RMS spread, and the removed centre (2) and log spread (1) join every joint's input, so the
    network sees one pose at one size whether the person stands 1.5 or 8 m away, and still gets the
    perspective cues. Per frame, so a frame's features never depend on its neighbours (streaming-exact)."""

    EXTRA_CHANNELS = 3   # centre x, y and log spread, with scale_input

    def __init__(self, in_channels: int, dim: int, num_joints: int, scale_input: bool = False):
        super().__init__()
        self.scale_input = scale_input
        self.proj = nn.Linear(in_channels + (self.EXTRA_CHANNELS if scale_input else 0), dim)
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        nn.init.trunc_normal_(self.joint_pos, std=0.02)

    def forward(self, x):  # (B, T, J, in) -> (B, T, J, C)
        if self.scale_input:
            x = scale_normalised(x)
        return self.proj(x) + self.joint_pos


def scale_normalised(x: torch.Tensor) -> torch.Tensor:
    """(B,T,J,3) (x, y, conf) -> (B,T,J,6) (x', y', conf, centre x, centre y, log spread), per frame.
    Missing joints (conf 0) stay at 0 and do not move the centre or the spread."""
    xy, conf = x[..., :2], x[..., 2:3]
    weight = conf / conf.sum(dim=2, keepdim=True).clamp_min(1e-6)              # (B,T,J,1)
    centre = (weight * xy).sum(dim=2, keepdim=True)                            # (B,T,1,2)
    spread = ((weight * (xy - centre).square()).sum(dim=(2, 3), keepdim=True)).sqrt().clamp_min(1e-3)  # (B,T,1,1)
    xy = torch.where(conf > 0, (xy - centre) / spread, torch.zeros_like(xy))
    J = x.shape[2]
    return torch.cat([xy, conf, centre.expand(-1, -1, J, -1), spread.log().expand(-1, -1, J, -1)], dim=-1)


def init_weights(module: nn.Module):
    """Truncated-normal linears, unit LayerNorms (ViT / MixSTE convention)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
