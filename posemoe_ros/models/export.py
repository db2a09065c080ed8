"""ONNX export of the lifting networks and an onnxruntime backend with the model's call signature.

`cached_onnx(model)` exports a model once and reuses the file: the name is a hash of the config
and the weights, so the node's onnxruntime backend starts in well under a second after the first run.
"""
import hashlib
import json
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

OPSET = 17


def export_onnx(model: nn.Module, path, batch: int = 1, opset: int = OPSET) -> Path:
    """Write model (eval mode) to ONNX with input "keypoints" (B,T,J,3), output "pose"; B is dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, cfg.num_frames, cfg.num_joints, getattr(cfg, "in_channels", 3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python checks
            # The TorchScript exporter handles these graphs (SDPA, replicate pad) directly and
            # needs no extra dependencies, so dynamo=False.
            torch.onnx.export(model, (x,), str(path), opset_version=opset, dynamo=False,
                              input_names=["keypoints"], output_names=["pose"],
                              dynamic_axes={"keypoints": {0: "batch"}, "pose": {0: "batch"}})
    finally:
        model.train(was_training)
    return path


def model_fingerprint(model: nn.Module, opset: int = OPSET) -> str:
    """sha256 of what the exported graph depends on: model class, config, weights, torch, opset."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    config = config.__dict__ if config is not None else {}
    h.update(json.dumps([type(model).__name__, config, torch.__version__, opset], sort_keys=True,
                        default=str).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def onnx_cache_dir() -> Path:
    """$XDG_CACHE_HOME/posemoe_ros (default ~/.cache/posemoe_ros); a temp dir if that is not writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "posemoe_ros"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"posemoe_ros-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def cached_onnx(model: nn.Module, cache_dir=None, opset: int = OPSET) -> Path:
    """Path of the model's ONNX export, exported on first use (written atomically: a reader never
    sees a partial file, and concurrent exporters just replace one complete file by another)."""
    cache_dir = Path(cache_dir) if cache_dir else onnx_cache_dir()
    path = cache_dir / f"{type(model).__name__.lower()}-{model_fingerprint(model, opset)[:32]}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=path.stem, suffix=".part")
    os.close(fd)
    try:
        export_onnx(model, tmp, opset=opset)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class OnnxLifter:
    """onnxruntime CPU sessions called like the model: (B,T,J,3) float32 -> (B,T,J,3) float32.

    `batch_parallel` > 1 splits a batch into that many chunks run at once by as many
    single-threaded sessions: for these small networks (hundreds of tiny ops) splitting the work
    per window is about twice as fast on 2 cores as splitting every op over threads
    (intra_op_threads), and degrades gracefully when the cores are busy (docs/performance.md).
    """

    def __init__(self, path, intra_op_threads: int = 1, allow_spinning: bool = False, batch_parallel: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # By default idle pool threads sleep instead of spin-waiting: the node's own threads (DDS,
        # executor) share the same few cores, and a spinning pool steals their time between frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.sessions = [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                         for _ in range(max(1, batch_parallel))]
        self.session = self.sessions[0]
        self._pool = ThreadPoolExecutor(len(self.sessions) - 1) if len(self.sessions) > 1 else None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.num_frames, self.num_joints = inp.shape[1], inp.shape[2]

    def _run(self, session, x: np.ndarray) -> np.ndarray:
        return session.run(None, {self.input_name: x})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = min(len(self.sessions), len(x))
        if n <= 1:
            return self._run(self.session, x)
        chunks = np.array_split(x, n)  # onnxruntime releases the GIL: the chunks really run in parallel
        others = [self._pool.submit(self._run, s, c) for s, c in zip(self.sessions[1:], chunks[1:])]
        first = self._run(self.session, chunks[0])
        return np.concatenate([first] + [f.result() for f in others])


@torch.no_grad()
def onnx_parity(model: nn.Module, path, x: torch.Tensor) -> float:
    """Max abs difference between the PyTorch model (eval) and the ONNX file on input x."""
    was_training = model.training
    model.eval()
    expected = model(x).cpu().numpy()
    model.train(was_training)
    got = OnnxLifter(path)(x.cpu().numpy())
    return float(np.abs(expected - got).max())
