"""ONNX export of the lifting networks and an onnxruntime backend with the model's call signature.

A streaming model (models/streaming.py) is exported as its one-frame step: inputs "keypoints"
(B,J,3), "past_kv" (B,A,J,W-1,2C), "ages" (B,W-1) int64 and "delay" () int64; outputs "pose" (B,J,3)
and "new_kv" (B,A,J,2C); B (people) is dynamic. A full-window model maps "keypoints" (B,T,J,3) to
"pose" (B,T,J,3). `cached_onnx(model)` exports a model once and reuses the file: the name is a hash
of the config and the weights, so the node's onnxruntime backend starts in well under a second
after the first run.
"""
import hashlib
import json
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from posemoe_ros.models.streaming import StreamingStep, empty_cache, is_streaming

OPSET = 17
# torch.onnx.export keeps global state: one export at a time per process (two lifters in one
# process may build their engines at once)
_EXPORT_LOCK = threading.Lock()


def export_onnx(model: nn.Module, path, batch: int = 2, opset: int = OPSET) -> Path:
    """Write model (eval mode) to ONNX (the step of a streaming model, see above), B dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    was_training = model.training
    model.eval()
    if is_streaming(model):
        module = StreamingStep(model)
        past, ages = empty_cache(model, batch)
        ages[:, : ages.shape[1] // 2] = torch.arange(1, ages.shape[1] // 2 + 1)  # traced with a part-full cache
        args = (torch.zeros(batch, cfg.num_joints, cfg.in_channels), past, ages, torch.tensor(0))
        names, outputs = ["keypoints", "past_kv", "ages", "delay"], ["pose", "new_kv"]
    else:
        module = model
        args = (torch.zeros(batch, cfg.num_frames, cfg.num_joints, getattr(cfg, "in_channels", 3)),)
        names, outputs = ["keypoints"], ["pose"]
    dynamic = {n: {0: "batch"} for n in names + outputs if n != "delay"}
    try:
        with _EXPORT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python checks
            # The TorchScript exporter handles these graphs (SDPA, replicate pad) directly and
            # needs no extra dependencies, so dynamo=False.
            torch.onnx.export(module, args, str(path), opset_version=opset, dynamo=False,
                              input_names=names, output_names=outputs, dynamic_axes=dynamic)
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
        self._path, self._threads, self._spinning = path, intra_op_threads, allow_spinning
        self.sessions = [self._new_session() for _ in range(max(1, batch_parallel))]
        self.session = self.sessions[0]
        self._pool = ThreadPoolExecutor(len(self.sessions) - 1) if len(self.sessions) > 1 else None
        self.input_name = self.session.get_inputs()[0].name

    def _new_session(self, batch: int | None = None):
        """A session of the graph; with `batch`, its dynamic batch axis fixed to that size."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        # By default idle pool threads sleep instead of spin-waiting: the node's own threads (DDS,
        # executor) share the same few cores, and a spinning pool steals their time between frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        if batch is not None:
            options.add_free_dimension_override_by_name("batch", batch)
        return ort.InferenceSession(str(self._path), options, providers=["CPUExecutionProvider"])

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


class FixedBatchSessions:
    """One session of the step per batch size 1 .. max_batch (people per session), each with the
    graph's batch axis fixed (onnxruntime's free-dimension override): with every shape known,
    onnxruntime folds the shape arithmetic (Shape, Gather, Unsqueeze, Concat chains) out of the
    graph, and the step is faster (1.1-1.4x for 1-10 people, bench/step_profile.py).

    A session takes ~0.2 s to build: sizes 1 .. prebuild are built here, before the first frame;
    any other size the first time it is asked for (that frame waits for it). A batch up to
    max_batch always runs on its own fixed session, never on the dynamic one: the two graphs agree
    only to ~1e-6, and a lift must not depend on which one happened to be ready. No background
    builds either: they competed with the lifting for the cores and made frames late. Above
    max_batch, or for a size whose build failed, get() is None and the dynamic session serves."""

    def __init__(self, new_session, max_batch: int, prebuild: int = 4):
        self.max_batch, self._new_session = max_batch, new_session
        self._lock = threading.Lock()   # batch-parallel sessions may ask for a new size at once
        self.failed: dict[int, str] = {}
        self._sessions = {batch: new_session(batch) for batch in range(1, min(prebuild, max_batch) + 1)}

    def get(self, batch: int):
        """The session fixed to `batch` (built now if need be), or None: run the dynamic one."""
        session = self._sessions.get(batch)
        if session is not None or not 0 < batch <= self.max_batch:
            return session
        with self._lock:
            if batch not in self._sessions and batch not in self.failed:
                try:
                    self._sessions[batch] = self._new_session(batch)
                except Exception as exc:  # noqa: BLE001 - onnxruntime errors; the dynamic session serves
                    self.failed[batch] = f"{type(exc).__name__}: {exc}"
            return self._sessions.get(batch)


class OnnxStep(OnnxLifter):
    """onnxruntime sessions of a streaming model's step: (x, past_kv, ages, delay) -> (pose, new_kv),
    numpy in and out, the batch (people) split over `batch_parallel` single-threaded sessions.
    With fixed_batches > 0, batches of up to that many people run on sessions fixed to their size
    (FixedBatchSessions)."""

    def __init__(self, path, intra_op_threads: int = 1, allow_spinning: bool = False, batch_parallel: int = 1,
                 fixed_batches: int = 0):
        super().__init__(path, intra_op_threads, allow_spinning, batch_parallel)
        self.fixed = FixedBatchSessions(self._new_session, fixed_batches) if fixed_batches > 0 else None

    def _run_step(self, session, x, past, ages, delay):
        fixed = self.fixed.get(len(x)) if self.fixed is not None else None
        return (fixed or session).run(None, {"keypoints": x, "past_kv": past, "ages": ages, "delay": delay})

    def __call__(self, x, past, ages, delay: int):
        x = np.ascontiguousarray(x, dtype=np.float32)
        past = np.ascontiguousarray(past, dtype=np.float32)
        ages = np.ascontiguousarray(ages, dtype=np.int64)
        d = np.array(delay, np.int64)
        n = min(len(self.sessions), len(x))
        if n <= 1:
            pose, new_kv = self._run_step(self.session, x, past, ages, d)
            return pose, new_kv
        parts = [np.array_split(a, n) for a in (x, past, ages)]
        others = [self._pool.submit(self._run_step, s, *(p[i] for p in parts), d)
                  for i, s in enumerate(self.sessions[1:], 1)]
        results = [self._run_step(self.session, *(p[0] for p in parts), d)] + [f.result() for f in others]
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


@torch.no_grad()
def onnx_parity(model: nn.Module, path, x: torch.Tensor, delay: int = 0) -> float:
    """Max abs difference between the PyTorch model (eval) and the ONNX file on input x (B,T,J,3).

    A streaming model runs x frame by frame through both steps (the ONNX one fed its own cache)."""
    was_training = model.training
    model.eval()
    try:
        if not is_streaming(model):
            return float(np.abs(model(x).cpu().numpy() - OnnxLifter(path)(x.cpu().numpy())).max())
        torch_step, onnx_step = StreamingStep(model), OnnxStep(path)
        past, ages = empty_cache(model, x.shape[0])
        onnx_past, worst = past.numpy().copy(), 0.0
        P = past.shape[3]
        for t in range(x.shape[1]):
            pose, new = torch_step(x[:, t], past, ages, torch.tensor(delay))
            got, got_new = onnx_step(x[:, t].numpy(), onnx_past, ages.numpy(), delay)
            worst = max(worst, float(np.abs(pose.numpy() - got).max()), float(np.abs(new.numpy() - got_new).max()))
            past[:, :, :, t % P], onnx_past[:, :, :, t % P] = new, got_new
            ages = torch.where(ages <= P, ages + 1, ages)
            ages[:, t % P] = 1
        return worst
    finally:
        model.train(was_training)
