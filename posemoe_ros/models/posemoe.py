"""PoseMoE: mixture-of-experts lifting network (Liu et al., arXiv 2512.16494), pure PyTorch.

Decouple, then aggregate:
  embed    x (B,T,J,3) = (x_n, y_n, conf) -> h (B,T,J,C) with joint + frame position embeddings
  encoder  (PME) two experts kept apart
           - 2D-pose expert: spatio-temporal self-attention refining h
           - depth expert:   learned Gaussian depth prior tokens that read h by spatial
                             cross-attention, then refine in their own spatio-temporal blocks
           - pose router:    per-token softmax gate over the two experts -> fused feature
  decoder  (PMD) bidirectional cross-attention between the streams (2D reads depth, depth reads
           2D) in the spatial and temporal dimension
  head     x, y from the 2D stream, z from the depth stream; root joint subtracted (pelvis = 0)
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
    num_frames: int = 27
    num_joints: int = NUM_JOINTS
    in_channels: int = 3
    dim: int = 48
    heads: int = 4
    mlp_ratio: float = 2.0
    encoder_layers: int = 1     # spatio-temporal layers in each expert
    decoder_layers: int = 1     # bidirectional cross-expert layers
    dropout: float = 0.0
    causal: bool = False        # temporal attention sees only past and current frames
    router_fuse: bool = True    # add the router-fused feature to both streams at decoder entry


class DepthExpert(nn.Module):
    """Depth features from scratch: Gaussian prior tokens that read the 2D features per frame."""

    def __init__(self, cfg: PoseMoEConfig):
        super().__init__()
        # One prior token per joint, shared by all frames (frame identity comes from frame_pos).
        self.depth_tokens = nn.Parameter(torch.empty(1, 1, cfg.num_joints, cfg.dim))
        self.frame_pos = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, cfg.dim))
        self.read = nn.ModuleList(CrossBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                  for _ in range(cfg.encoder_layers))
        self.blocks = nn.ModuleList(STBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.causal)
                                    for _ in range(cfg.encoder_layers))

    def reset_priors(self):
        nn.init.normal_(self.depth_tokens, std=1.0)
        nn.init.trunc_normal_(self.frame_pos, std=0.02)

    def forward(self, h):  # h (B,T,J,C) embedded 2D -> (B,T,J,C) depth features
        B, T, J, C = h.shape
        d = (self.depth_tokens + self.frame_pos[:, :T]).expand(B, T, J, C)
        for read, block in zip(self.read, self.blocks):
            d = from_spatial(read(to_spatial(d), to_spatial(h)), B, T)  # depth tokens of a frame read its 2D joints
            d = block(d)
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

    def __init__(self, cfg: PoseMoEConfig):
        super().__init__()
        self.pose_reads_depth = STCrossBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.causal)
        self.depth_reads_pose = STCrossBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.causal)

    def forward(self, p, d):
        # Both directions read the other stream's input to this layer, so the update is symmetric.
        return self.pose_reads_depth(p, d), self.depth_reads_pose(d, p)


class PoseMoE(nn.Module):
    name = "posemoe"

    def __init__(self, config: PoseMoEConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = PoseEmbedding(cfg.in_channels, cfg.dim, cfg.num_frames, cfg.num_joints)
        self.pose_expert = nn.ModuleList(STBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.causal)
                                         for _ in range(cfg.encoder_layers))
        self.depth_expert = DepthExpert(cfg)
        self.router = PoseRouter(cfg.dim)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.xy_head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 2))
        self.z_head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 1))
        self.apply(init_weights)
        self.depth_expert.reset_priors()

    def forward(self, x, return_aux: bool = False):
        h = self.embed(x)                               # (B,T,J,C)
        p = h
        for block in self.pose_expert:                  # 2D-pose expert
            p = block(p)
        d = self.depth_expert(h)                        # depth expert
        fused, weights = self.router([p, d])            # (B,T,J,C), (B,T,J,2)
        if self.config.router_fuse:
            p, d = p + fused, d + fused
        for layer in self.decoder:                      # cross-expert decoder
            p, d = layer(p, d)
        xy = self.xy_head(p)                            # (B,T,J,2)
        z = self.z_head(d)                              # (B,T,J,1)
        xy = xy - xy[:, :, ROOT:ROOT + 1]
        z = z - z[:, :, ROOT:ROOT + 1]
        pose = torch.cat([xy, z], dim=-1)               # (B,T,J,3) root-relative metres
        if return_aux:
            return pose, {"xy": xy, "z": z, "router": weights}
        return pose
