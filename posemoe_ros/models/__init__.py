"""Model registry: build_model(name, preset, **overrides) for the lifting networks.

Presets fix the temporal window W (s: 27, b: 81, l: 243 frames: what each temporal attention
reads; the transformers stream, models/streaming.py) and the size; `s` is the ROS node's default
and is sized for real time on two CPU cores. Entangled presets match PoseMoE's parameter count
(within 5%, tested) so the comparison isolates the architecture.
"""
import dataclasses

import torch.nn as nn

from posemoe_ros.models.entangled import Entangled, EntangledConfig
from posemoe_ros.models.posemoe import PoseMoE, PoseMoEConfig
from posemoe_ros.models.tcn import TCN, TCNConfig

MODELS = {"posemoe": (PoseMoE, PoseMoEConfig), "entangled": (Entangled, EntangledConfig), "tcn": (TCN, TCNConfig)}
MODEL_NAMES = tuple(MODELS)

PRESETS = {
    "posemoe": {
        "s": dict(num_frames=27, dim=48, heads=4, mlp_ratio=2.0, encoder_layers=2, decoder_layers=1),
        "b": dict(num_frames=81, dim=128, heads=8, mlp_ratio=2.0, encoder_layers=3, decoder_layers=2, dropout=0.1),
        "l": dict(num_frames=243, dim=256, heads=8, mlp_ratio=2.0, encoder_layers=4, decoder_layers=2, dropout=0.1),
    },
    "entangled": {
        "s": dict(num_frames=27, dim=48, heads=4, mlp_ratio=2.0, layers=7),
        "b": dict(num_frames=81, dim=128, heads=8, mlp_ratio=2.0, layers=12, dropout=0.1),
        "l": dict(num_frames=243, dim=256, heads=8, mlp_ratio=2.0, layers=14, dropout=0.1),
    },
    "tcn": {
        "s": dict(num_frames=27, channels=256, filter_widths=[3, 3, 3]),
        "b": dict(num_frames=81, channels=512, filter_widths=[3, 3, 3, 3]),
        "l": dict(num_frames=243, channels=1024, filter_widths=[3, 3, 3, 3, 3]),
    },
}


def build_model(name: str, preset: str = "s", **overrides) -> nn.Module:
    """A freshly initialised model; overrides replace any config field of the preset."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    if preset not in PRESETS[name]:
        raise ValueError(f"unknown preset {preset!r} for {name}; choose from {tuple(PRESETS[name])}")
    cls, config_cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)} for {name}; fields are {sorted(fields)}")
    return cls(config_cls(**{**PRESETS[name][preset], **overrides}))


def model_config_dict(model: nn.Module) -> dict:
    return dataclasses.asdict(model.config)
