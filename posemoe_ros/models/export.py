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
# torch.onnx.export keeps global state: one export at a time per process (FixedBatchSessions
# exports in a background thread while the node may rebuild its engine)
_EXPORT_LOCK = threading.Lock()


def export_onnx(model: nn.Module, path, batch: int = 2, opset: int = OPSET, fixed_batch: bool = False) -> Path:
    """Write model (eval mode) to ONNX (the step of a streaming model, see above); B is dynamic, or
    with fixed_batch exactly `batch` (onnxruntime then folds the graph's shape arithmetic away)."""
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
    dynamic = None if fixed_batch else {n: {0: "batch"} for n in names + outputs if n != "delay"}
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


def cached_onnx(model: nn.Module, cache_dir=None, opset: int = OPSET, fixed_batch: int | None = None) -> Path:
    """Path of the model's ONNX export, exported on first use (written atomically: a reader never
    sees a partial file, and concurrent exporters just replace one complete file by another).
    fixed_batch: the export for exactly that batch (export_onnx's fixed_batch)."""
    cache_dir = Path(cache_dir) if cache_dir else onnx_cache_dir()
    suffix = f"-b{fixed_batch}" if fixed_batch else ""
    path = cache_dir / f"{type(model).__name__.lower()}-{model_fingerprint(model, opset)[:32]}{suffix}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=path.stem, suffix=".part")
    os.close(fd)
    try:
        export_onnx(model, tmp, batch=fixed_batch or 2, opset=opset, fixed_batch=bool(fixed_batch))
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
        self._new_session = lambda p: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        self.sessions = [self._new_session(path) for _ in range(max(1, batch_parallel))]
        self.session = self.sessions[0]
        self._pool = ThreadPoolExecutor(len(self.sessions) - 1) if len(self.sessions) > 1 else None
        self.input_name = self.session.get_inputs()[0].name

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
    """Sessions of a step exported for one fixed batch each (1 .. max_batch people), built one at a
    time in a background thread the first time a batch is asked for; until a batch's session is
    ready, get() returns None and the dynamic-batch session serves. With a fixed batch onnxruntime
    folds the shape arithmetic (Shape, Gather, Unsqueeze, Concat chains) out of the graph: the step
    is about 1.4x faster for 1-10 people (1.0-2.0x across runs, bench/step_profile.py). The exports
    are cached on disk (cached_onnx), so after the first run a batch costs only its session (~0.3 s,
    in the background).
    Exports come from a private CPU float32 copy of the model, so the caller may move its own."""

    def __init__(self, model: nn.Module, new_session, max_batch: int):
        import copy
        self.max_batch, self._new_session = max_batch, new_session
        self._model = copy.deepcopy(model).to("cpu", torch.float32).eval()
        self._cache_dir = onnx_cache_dir()     # resolved now: the environment may change later
        self._ready: dict[int, object] = {}
        self._failed: dict[int, str] = {}
        self._asked: dict[int, object] = {}   # batch -> Future
        # one worker: a build is a few seconds of CPU the first time; at exit it finishes the one
        # under way (bounded), and close() drops the rest
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="onnx_fixed_batch")

    def get(self, batch: int):
        """The fixed-batch session for `batch` if ready, else None (and its build is queued)."""
        session = self._ready.get(batch)
        if session is None and 0 < batch <= self.max_batch and batch not in self._asked:
            self._asked[batch] = self._worker.submit(self._build, batch)
        return session

    def _build(self, batch: int):
        try:
            self._ready[batch] = self._new_session(cached_onnx(self._model, self._cache_dir, fixed_batch=batch))
        except Exception as exc:  # noqa: BLE001 - the dynamic session keeps serving this batch
            self._failed[batch] = f"{type(exc).__name__}: {exc}"

    def wait(self, batch: int, timeout: float | None = None) -> bool:
        """Ask for `batch` and block until its build ended; True if its session is ready."""
        self.get(batch)
        future = self._asked.get(batch)
        if future is not None:
            future.result(timeout)
        return batch in self._ready

    def close(self):
        self._worker.shutdown(wait=False, cancel_futures=True)


class OnnxStep(OnnxLifter):
    """onnxruntime sessions of a streaming model's step: (x, past_kv, ages, delay) -> (pose, new_kv),
    numpy in and out, the batch (people) split over `batch_parallel` single-threaded sessions.
    With `model` and fixed_batches > 0, batches of up to that many people run on fixed-batch
    sessions once they are built (FixedBatchSessions); the two graphs agree to ~1e-6."""

    def __init__(self, path, intra_op_threads: int = 1, allow_spinning: bool = False, batch_parallel: int = 1,
                 model: nn.Module | None = None, fixed_batches: int = 0):
        super().__init__(path, intra_op_threads, allow_spinning, batch_parallel)
        self.fixed = (FixedBatchSessions(model, self._new_session, fixed_batches)
                      if model is not None and fixed_batches > 0 else None)

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
