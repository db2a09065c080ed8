"""Where a frame's time goes in the lifter, from profiles (docs/performance.md, "What limits it").

    python bench/step_profile.py --people 1,5,10 --threads 1        # the default weights, onnxruntime

Three views of the node's per-frame work, each for P people in view:
1. `Lifter.process` under cProfile on a steady stream of frames (procedural people, h36m17
   keypoints; caches full): the share of the onnxruntime step
   against the numpy around it (cache gather, the optical-axis views, root solve, tracking).
2. onnxruntime's own profiler over the exported step: kernel time by operator type, and kernels per
   step (how much of the step is matrix work and how much layout: Transpose, Split, Concat, Gather...).
3. The step's dynamic-batch graph against the same graph with its batch fixed to P by
   onnxruntime's free-dimension override (what the lifter runs, models/export.FixedBatchSessions)
   and against a graph exported by torch for exactly P, alternating rounds in one run.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from posemoe_ros.data.procedural import KINDS, generate_motion  # noqa: E402
from posemoe_ros.models.export import export_onnx  # noqa: E402
from posemoe_ros.models.streaming import StreamingStep, cache_shape, empty_cache  # noqa: E402
from posemoe_ros.pipeline.lifter import Lifter, LifterConfig  # noqa: E402

FPS = 30
K = np.array([[922.0, 0, 640], [0, 922.0, 360], [0, 0, 1]])


def keypoint_stream(P: int, frames: int):
    """(uv (P,17,2), conf (P,17)) per frame: P procedural people side by side 3-5 m away."""
    motions = [generate_motion(KINDS[i % len(KINDS)], frames / FPS + 1, seed=i) for i in range(P)]
    for t in range(frames):
        X = np.stack([m[t] * [1, -1, 1] + [0.8 * i - 0.4 * P, 0.9, 3.0 + i % 3] for i, m in enumerate(motions)])
        yield X[..., :2] / X[..., 2:] * K[0, 0] + K[:2, 2], np.full((P, 17), 0.9)


def lifter_profile(P: int, frames: int, top: int, threads: int) -> dict:
    lifter = Lifter.from_weights(None, LifterConfig(backend="onnxruntime", num_threads=threads))
    ids = [f"p{i}" for i in range(P)]
    stream = list(keypoint_stream(P, frames))
    dt_ns = 10**9 // FPS
    for t in range(lifter.num_frames):  # full caches first: a track in steady state
        lifter.process(t * dt_ns, "h36m17", ids, *stream[t], K, np.zeros(5))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for t in range(lifter.num_frames, frames):
        lifter.process(t * dt_ns, "h36m17", ids, *stream[t], K, np.zeros(5))
    prof.disable()
    n = frames - lifter.num_frames
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # tottime over all functions
    rows = sorted(((v[2], f"{Path(k[0]).name}:{k[2]}") for k, v in stats.stats.items()), reverse=True)[:top]
    return {"ms_per_frame": 1e3 * (time.perf_counter() - t0) / n,
            "top": [(name, round(1e3 * s / n, 3), round(100 * s / total, 1)) for s, name in rows]}


def session(path, threads: int, profile_prefix: str | None = None, fixed_batch: int | None = None):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if fixed_batch:
        o.add_free_dimension_override_by_name("batch", fixed_batch)
    if profile_prefix:
        o.enable_profiling, o.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def step_feed(model, P: int) -> dict:
    A, J, W1, C2 = cache_shape(model)
    rng = np.random.default_rng(0)
    return {"keypoints": (rng.random((P, J, 3)) * 0.2).astype(np.float32),
            "past_kv": rng.standard_normal((P, A, J, W1, C2)).astype(np.float32),
            "ages": np.tile(np.arange(1, W1 + 1), (P, 1)).astype(np.int64), "delay": np.array(0, np.int64)}


def ort_op_profile(model, dynamic_path: Path, P: int, threads: int, runs: int, tmp: Path, top: int) -> dict:
    s = session(dynamic_path, threads, str(tmp / f"ort_{P}"), fixed_batch=P)  # as the lifter runs it
    feed = step_feed(model, P)
    for _ in range(runs):
        s.run(None, feed)
    events = [e for e in json.loads(Path(s.end_profiling()).read_text())
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    by_op, count = collections.Counter(), collections.Counter()
    for e in events:
        by_op[e["args"]["op_name"]] += e["dur"]
        count[e["args"]["op_name"]] += 1
    total = sum(by_op.values())
    return {"kernel_ms_per_step": total / runs / 1e3, "kernels_per_step": len(events) // runs,
            "top": [(op, round(d / runs / 1e3, 3), round(100 * d / total, 1), count[op] // runs)
                    for op, d in by_op.most_common(top)]}


def static_export(model, P: int, path: Path) -> Path:
    past, ages = empty_cache(model, P)
    ages[:, : ages.shape[1] // 2] = torch.arange(1, ages.shape[1] // 2 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StreamingStep(model).eval(), (torch.zeros(P, model.config.num_joints, 3), past, ages,
                                                        torch.tensor(0)), str(path), opset_version=17, dynamo=False,
                          input_names=["keypoints", "past_kv", "ages", "delay"], output_names=["pose", "new_kv"])
    return path


def static_vs_dynamic(model, dynamic_path: Path, P: int, threads: int, rounds: int, calls: int, tmp: Path) -> dict:
    feed = step_feed(model, P)
    sessions = {"dynamic": session(dynamic_path, threads),
                "override": session(dynamic_path, threads, fixed_batch=P),
                "static": session(static_export(model, P, tmp / f"static_{P}.onnx"), threads)}
    outs = {k: s.run(None, feed) for k, s in sessions.items()}
    diff = {k: max(float(np.abs(a - b).max()) for a, b in zip(outs["dynamic"], outs[k])) for k in ("override", "static")}
    times = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                s.run(None, feed)
            times[k].append(1e3 * (time.perf_counter() - t0) / calls)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"dynamic_ms": med["dynamic"], "override_ms": med["override"], "static_ms": med["static"],
            "max_abs_diff": diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", default="1,5,10")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=230, help="frames through Lifter.process per P (first W warm up)")
    ap.add_argument("--runs", type=int, default=100, help="profiled step calls per P")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "out" / "bench" / "step_profile.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = Lifter.from_weights(None, LifterConfig()).model.eval()
    result = {"threads": args.threads, "weights": "posemoe_ros/weights/posemoe_s.safetensors", "people": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dynamic_path = export_onnx(model, tmp / "step.onnx")
        for P in (int(p) for p in args.people.split(",")):
            row = {"lifter": lifter_profile(P, args.frames, args.top, args.threads),
                   "onnxruntime": ort_op_profile(model, dynamic_path, P, args.threads, args.runs, tmp, args.top),
                   "static_vs_dynamic": static_vs_dynamic(model, dynamic_path, P, args.threads, args.rounds, 20, tmp)}
            result["people"][P] = row
            lp, op, sv = row["lifter"], row["onnxruntime"], row["static_vs_dynamic"]
            print(f"\n## {P} people, {args.threads} thread(s)")
            print(f"Lifter.process {lp['ms_per_frame']:.2f} ms/frame under cProfile; own time by function:")
            for name, ms, pct in lp["top"]:
                print(f"  {name:60s} {ms:7.3f} ms  {pct:5.1f} %")
            print(f"onnxruntime step: {op['kernel_ms_per_step']:.2f} ms of kernels, {op['kernels_per_step']} kernels per step:")
            for name, ms, pct, n in op["top"]:
                print(f"  {name:24s} {ms:7.3f} ms  {pct:5.1f} %  x{n}")
            print(f"step: dynamic batch {sv['dynamic_ms']:.2f} ms, batch fixed by override {sv['override_ms']:.2f} ms, "
                  f"exported for P {sv['static_ms']:.2f} ms; max |diff| to dynamic {sv['max_abs_diff']['override']:.1e} / "
                  f"{sv['max_abs_diff']['static']:.1e}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
