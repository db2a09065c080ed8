"""Weights on disk: safetensors only (no pickle), self-describing.

The file's metadata holds the model name and its full config as JSON, so load_model(path)
rebuilds the network from the file alone. Loading checks every tensor name and shape and
reports all problems at once.
"""
import json
from pathlib import Path

import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from posemoe_ros.models import build_model, model_config_dict

FORMAT = "posemoe_ros.weights/1"


def save_weights(model: nn.Module, path, extra_metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    metadata = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    metadata.update({"format": FORMAT, "model": model.name, "config": json.dumps(model_config_dict(model))})
    # clone(): safetensors refuses shared / non-contiguous storage.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


# First bytes of the formats torch.save writes (zip archive, legacy pickle): refused with a clear
# reason, never opened, since unpickling a file can run any code in it.
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


def model_metadata(path) -> dict[str, str]:
    """The file's metadata (model, config JSON, and whatever extra_metadata was saved)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
        # A safetensors file is an 8-byte little-endian header length then the JSON header ("{"): its
        # first byte can be 0x80 too (a header of 128 + 256k bytes), so only a non-JSON start is a pickle.
        if head.startswith(_PICKLE_MAGIC) and head[8:9] != b"{":
            raise ValueError(f"{path} is a PyTorch/pickle file, not safetensors; pickles are never loaded "
                             "(unpickling can run code): convert it with save_weights")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable safetensors file (truncated or wrong format?): {exc}") from None
    if "model" not in metadata or "config" not in metadata:
        raise ValueError(f"{path} has no model/config metadata; was it written by save_weights?")
    return dict(metadata)


def load_model(path, device="cpu") -> nn.Module:
    """Rebuild the model described by the file and load its weights (eval mode)."""
    path = Path(path)
    metadata = model_metadata(path)
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: config metadata is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: config metadata is a JSON {type(config).__name__}, not an object")
    try:
        model = build_model(metadata["model"], **config)
    except (TypeError, ValueError, RuntimeError) as exc:  # unknown model/preset/field, values of the wrong type
        raise ValueError(f"{path}: metadata describes no buildable model ({exc})") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: cannot read tensors (truncated file?): {exc}") from None
    check_state_dict(model, state, path)
    model.load_state_dict(state)
    return model.to(device).eval()


def check_state_dict(model: nn.Module, state: dict, source="weights"):
    """ValueError listing missing, unexpected and shape-mismatched tensor names."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                        for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or mismatched:
        def listed(names, most=3):  # one line, however many tensors differ
            return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
        problems = [f"{label} ({len(names)}): {listed(names)}"
                    for label, names in (("missing", missing), ("unexpected", unexpected),
                                         ("shape mismatch", mismatched)) if names]
        raise ValueError(f"{source} does not match {model.name} {model_config_dict(model)}: " + "; ".join(problems))
