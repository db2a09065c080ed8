"""TCN baseline: VideoPose3D-style dilated temporal convolutions (Pavllo et al., CVPR 2019), seq2seq.

The original predicts the centre frame of a receptive-field window. To output every frame
(B,T,J,3) like the transformers, the input is replicate-padded in time by the receptive field
(half each side, or all on the left when causal) and the network runs its valid convolutions
over the padded sequence: output frame t is exactly VideoPose3D applied to the window around
(or, causal, ending at) frame t, at the cost of one strided pass over T frames.
"""
import math
from dataclasses import dataclass, field

import torch.nn as nn
import torch.nn.functional as F

from posemoe_ros.skeleton import NUM_JOINTS, ROOT


@dataclass
class TCNConfig:
    num_frames: int = 27
    num_joints: int = NUM_JOINTS
    in_channels: int = 3
    channels: int = 256
    filter_widths: list[int] = field(default_factory=lambda: [3, 3, 3])
    dropout: float = 0.25
    causal: bool = False


class TCN(nn.Module):
    name = "tcn"

    def __init__(self, config: TCNConfig):
        super().__init__()
        self.config = cfg = config
        widths, C = list(cfg.filter_widths), cfg.channels
        assert all(w % 2 == 1 for w in widths), "filter widths must be odd"
        self.receptive_field = math.prod(widths)
        self.expand = nn.Conv1d(cfg.num_joints * cfg.in_channels, C, widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(C, momentum=0.1)
        self.drop = nn.Dropout(cfg.dropout)
        self.dilations, self.convs, self.bns = [], nn.ModuleList(), nn.ModuleList()
        dilation = widths[0]
        for w in widths[1:]:
            self.dilations.append(dilation)
            self.convs.append(nn.Conv1d(C, C, w, dilation=dilation, bias=False))
            self.bns.append(nn.BatchNorm1d(C, momentum=0.1))
            self.convs.append(nn.Conv1d(C, C, 1, bias=False))
            self.bns.append(nn.BatchNorm1d(C, momentum=0.1))
            dilation *= w
        self.shrink = nn.Conv1d(C, cfg.num_joints * 3, 1)

    def forward(self, x, return_aux: bool = False):
        B, T, J, _ = x.shape
        h = x.reshape(B, T, -1).transpose(1, 2)                          # (B, J*3, T)
        pad = self.receptive_field - 1
        h = F.pad(h, (pad, 0) if self.config.causal else (pad // 2, pad // 2), mode="replicate")
        h = self.drop(F.relu(self.expand_bn(self.expand(h))))
        for i, dilation in enumerate(self.dilations):
            # Residual: the conv eats (w-1)*dilation frames; keep the matching slice of the skip path.
            cut = (self.convs[2 * i].kernel_size[0] - 1) * dilation
            res = h[:, :, cut:] if self.config.causal else h[:, :, cut // 2: h.shape[2] - cut // 2]
            h = self.drop(F.relu(self.bns[2 * i](self.convs[2 * i](h))))
            h = res + self.drop(F.relu(self.bns[2 * i + 1](self.convs[2 * i + 1](h))))
        pose = self.shrink(h).transpose(1, 2).reshape(B, T, J, 3)        # (B,T,J,3)
        pose = pose - pose[:, :, ROOT:ROOT + 1]
        return (pose, {}) if return_aux else pose
