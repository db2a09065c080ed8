"""Entangled baseline: one stream of alternating spatial / temporal attention (MixSTE / DSTformer style).

Same embedding, blocks and root handling as PoseMoE, but 2D and depth share every feature, so
comparing the two at equal parameter count isolates the value of decoupling. It streams the same
way (models/streaming.py); the last block's temporal attention carries the output delay.
"""
from dataclasses import dataclass

import torch.nn as nn

from posemoe_ros.models.attention import PoseEmbedding, STBlock, init_weights
from posemoe_ros.skeleton import NUM_JOINTS, ROOT


@dataclass
class EntangledConfig:
    num_frames: int = 27        # W: frames each temporal attention reads
    num_joints: int = NUM_JOINTS
    in_channels: int = 3
    dim: int = 48
    heads: int = 4
    mlp_ratio: float = 2.0
    layers: int = 4
    dropout: float = 0.0
    max_lookahead: int = 8      # output delays the last block is trained for (0 .. this)
    scale_input: bool = False   # per-frame 2D centre and spread divided out, fed as inputs (attention.PoseEmbedding)


class Entangled(nn.Module):
    name = "entangled"

    def __init__(self, config: EntangledConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = PoseEmbedding(cfg.in_channels, cfg.dim, cfg.num_joints, cfg.scale_input)
        self.blocks = nn.ModuleList(STBlock(cfg.dim, cfg.heads, cfg.num_frames, cfg.mlp_ratio, cfg.dropout,
                                            delays=cfg.max_lookahead + 1 if i == cfg.layers - 1 else 1)
                                    for i in range(cfg.layers))
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 3))
        self.apply(init_weights)

    def forward(self, x, delay=0, memory=None, return_aux: bool = False):
        """x (B,T,J,3) -> (B,T,J,3): output t is frame t-delay. memory: one streaming step (T = 1)."""
        h = self.embed(x)                    # (B,T,J,C)
        for i, block in enumerate(self.blocks):
            h = block(h, memory, delay if i == len(self.blocks) - 1 else 0)
        pose = self.head(h)                  # (B,T,J,3)
        pose = pose - pose[:, :, ROOT:ROOT + 1]
        return (pose, {}) if return_aux else pose
