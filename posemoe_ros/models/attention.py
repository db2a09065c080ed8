"""Transformer building blocks shared by PoseMoE and the entangled baseline.

All blocks are pre-norm (x + f(LN(x))) and work on token sequences (N, L, C). The spatial /
temporal wrappers fold a pose feature map (B, T, J, C) into such sequences: spatial attention
runs across the J joints of each frame, temporal attention across the T frames of each joint.
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
    """Multi-head attention; self-attention when context is None, else cross-attention.

    causal=True masks keys after the query position (queries and keys must index the same frames).
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

    def forward(self, x, context=None, causal: bool = False):
        N, L, C = x.shape
        context = x if context is None else context
        S = context.shape[1]
        q = self.q(x).view(N, L, self.heads, C // self.heads).transpose(1, 2)          # (N, h, L, d)
        k, v = self.kv(context).view(N, S, 2, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (N, h, S, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(N, L, C)
        return self.proj_drop(self.proj(y))


class Block(nn.Module):
    """Pre-norm self-attention + MLP on (N, L, C)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x, causal: bool = False):
        x = x + self.attn(self.ln1(x), causal=causal)
        return x + self.mlp(self.ln2(x))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention (x reads context) + MLP on (N, L, C)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x, context, causal: bool = False):
        x = x + self.attn(self.ln_q(x), self.ln_kv(context), causal=causal)
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

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.spatial = Block(dim, heads, mlp_ratio, dropout)
        self.temporal = Block(dim, heads, mlp_ratio, dropout)

    def forward(self, x):
        B, T, J, _ = x.shape
        x = from_spatial(self.spatial(to_spatial(x)), B, T)
        return from_temporal(self.temporal(to_temporal(x), causal=self.causal), B, J)


class STCrossBlock(nn.Module):
    """Cross-attention of x onto context in the spatial then temporal dimension, on (B, T, J, C)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.spatial = CrossBlock(dim, heads, mlp_ratio, dropout)
        self.temporal = CrossBlock(dim, heads, mlp_ratio, dropout)

    def forward(self, x, context):
        B, T, J, _ = x.shape
        x = from_spatial(self.spatial(to_spatial(x), to_spatial(context)), B, T)
        return from_temporal(self.temporal(to_temporal(x), to_temporal(context), causal=self.causal), B, J)


class PoseEmbedding(nn.Module):
    """Linear embedding of per-joint inputs plus learned joint and frame position embeddings."""

    def __init__(self, in_channels: int, dim: int, num_frames: int, num_joints: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, dim)
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        self.frame_pos = nn.Parameter(torch.zeros(1, num_frames, 1, dim))
        nn.init.trunc_normal_(self.joint_pos, std=0.02)
        nn.init.trunc_normal_(self.frame_pos, std=0.02)

    def forward(self, x):  # (B, T, J, in) -> (B, T, J, C)
        T = x.shape[1]
        if T > self.frame_pos.shape[1]:
            raise ValueError(f"window of {T} frames exceeds the model's num_frames {self.frame_pos.shape[1]}")
        return self.proj(x) + self.joint_pos + self.frame_pos[:, :T]


def init_weights(module: nn.Module):
    """Truncated-normal linears, unit LayerNorms (ViT / MixSTE convention)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
