"""PoseMoE: mixture-of-experts lifting network (Liu et al., arXiv 2512.16494), pure PyTorch.

Decouple, then aggregate:
  embed    x (B,T,J,3) = (x_n, y_n, conf) -> h (B,T,J,C) with a joint embedding (time enters as
           relative positions in the temporal attention, models/attention.py)
  encoder  (PME) two experts kept apart
           - 2D-pose expert: spatio-temporal self-attention refining h
           - depth expert:   learned Gaussian depth prior tokens that read h by spatial
                             cross-attention, then refine in their own spatio-temporal blocks
           - pose router:    per-token softmax gate over the two experts -> fused feature
  decoder  (PMD) bidirectional cross-attention between the streams (2D reads depth, depth reads
           2D) in the spatial and temporal dimension
  head     x, y from the 2D stream, z from the depth stream; root joint subtracted (pelvis = 0)
Temporal attention is causal over the last `num_frames` frames (W) at every layer, so the network
streams: models/streaming.py lifts one new frame per step from cached keys and values, exactly.
`delay` k (0 .. max_lookahead) makes output t the pose of frame t-k (the lookahead).
Design choices the paper leaves open are explained in docs/model.md.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from posemoe_ros.models.attention import (CrossBlock, PoseEmbedding, STBlock, STCrossBlock, from_spatial,
                                          init_weights, to_spatial)
from posemoe_ros.skeleton import NUM_JOINTS, ROOT


@dataclass
class PoseMoEConfig:
    num_frames: int = 27        # W: frames each temporal attention reads (the current one and W-1 before it)
    num_joints: int = NUM_JOINTS
    in_channels: int = 3
    dim: int = 48
    heads: int = 4
    mlp_ratio: float = 2.0
    encoder_layers: int = 1     # spatio-temporal layers in each expert
    decoder_layers: int = 1     # bidirectional cross-expert layers
    dropout: float = 0.0
    router_fuse: bool = True    # add the router-fused feature to both streams at decoder entry
    max_lookahead: int = 8      # output delays the last decoder layer is trained for (0 .. this)
    scale_input: bool = False   # per-frame 2D centre and spread divided out, fed as inputs (attention.PoseEmbedding)


class DepthExpert(nn.Module):
    """Depth features from scratch: Gaussian prior tokens that read the 2D features per frame."""

    def __init__(self, cfg: PoseMoEConfig):
        super().__init__()
        # One prior token per joint, the same for every frame: a frame's depth features come only
        # from what its tokens read (and, through the temporal blocks, from the frames before it).
        self.depth_tokens = nn.Parameter(torch.empty(1, 1, cfg.num_joints, cfg.dim))
        self.read = nn.ModuleList(CrossBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                  for _ in range(cfg.encoder_layers))
        self.blocks = nn.ModuleList(STBlock(cfg.dim, cfg.heads, cfg.num_frames, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.encoder_layers))

    def reset_priors(self):
        nn.init.normal_(self.depth_tokens, std=1.0)

    def forward(self, h, memory=None):  # h (B,T,J,C) embedded 2D -> (B,T,J,C) depth features
        B, T, J, C = h.shape
        d = self.depth_tokens.repeat(B, T, 1, 1)  # not expand: a view of a leaf confuses flop_counter
        for read, block in zip(self.read, self.blocks):
            d = from_spatial(read(to_spatial(d), to_spatial(h)), B, T)  # depth tokens of a frame read its 2D joints
            d = block(d, memory)
        return d


class PoseRouter(nn.Module):
    """Per-token gate over the experts: softmax(W [f_2d, f_depth]) -> (B,T,J,2)."""

    def __init__(self, dim: int, num_experts: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(num_experts * dim)
        self.gate = nn.Linear(num_experts * dim, num_experts)

    def forward(self, experts: list[torch.Tensor]):
        w = self.gate(self.norm(torch.cat(experts, dim=-1))).softmax(dim=-1)  # (B,T,J,E)
        fused = sum(w[..., i:i + 1] * e for i, e in enumerate(experts))      # (B,T,J,C)
        return fused, w


class DecoderLayer(nn.Module):
    """Cross-expert aggregation: each stream reads the other (spatial then temporal)."""

    def __init__(self, cfg: PoseMoEConfig, delays: int = 1):
        super().__init__()
        args = (cfg.dim, cfg.heads, cfg.num_frames, cfg.mlp_ratio, cfg.dropout)
        self.pose_reads_depth = STCrossBlock(*args, delays=delays)
        self.depth_reads_pose = STCrossBlock(*args, delays=delays)

    def forward(self, p, d, memory=None, delay=0):
        # Both directions read the other stream's input to this layer, so the update is symmetric.
        return self.pose_reads_depth(p, d, memory, delay), self.depth_reads_pose(d, p, memory, delay)


class PoseMoE(nn.Module):
    name = "posemoe"

    def __init__(self, config: PoseMoEConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = PoseEmbedding(cfg.in_channels, cfg.dim, cfg.num_joints, cfg.scale_input)
        self.pose_expert = nn.ModuleList(STBlock(cfg.dim, cfg.heads, cfg.num_frames, cfg.mlp_ratio, cfg.dropout)
                                         for _ in range(cfg.encoder_layers))
        self.depth_expert = DepthExpert(cfg)
        self.router = PoseRouter(cfg.dim)
        # Only the last decoder layer knows the output delay: everything below it is cached as is.
        self.decoder = nn.ModuleList(DecoderLayer(cfg, delays=cfg.max_lookahead + 1 if i == cfg.decoder_layers - 1 else 1)
                                     for i in range(cfg.decoder_layers))
        self.xy_head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 2))
        self.z_head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 1))
        self.apply(init_weights)
        self.depth_expert.reset_priors()

    def forward(self, x, delay=0, memory=None, return_aux: bool = False):
        """x (B,T,J,3) -> (B,T,J,3): output t is frame t-delay. memory: one streaming step (T = 1)."""
        h = self.embed(x)                               # (B,T,J,C)
        p = h
        for block in self.pose_expert:                  # 2D-pose expert
            p = block(p, memory)
        d = self.depth_expert(h, memory)                # depth expert
        fused, weights = self.router([p, d])            # (B,T,J,C), (B,T,J,2)
        if self.config.router_fuse:
            p, d = p + fused, d + fused
        for i, layer in enumerate(self.decoder):        # cross-expert decoder; the last one is delayed
            p, d = layer(p, d, memory, delay if i == len(self.decoder) - 1 else 0)
        xy = self.xy_head(p)                            # (B,T,J,2)
        z = self.z_head(d)                              # (B,T,J,1)
        xy = xy - xy[:, :, ROOT:ROOT + 1]
        z = z - z[:, :, ROOT:ROOT + 1]
        pose = torch.cat([xy, z], dim=-1)               # (B,T,J,3) root-relative metres
        if return_aux:
            return pose, {"xy": xy, "z": z, "router": weights}
        return pose
