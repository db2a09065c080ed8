"""Forward latency of every model x preset x batch x backend x thread count on this CPU, with
MACs per frame and the fraction of the machine's measured fp32 peak each row reaches.

    python bench/model_latency.py                      # the full grid (about 10 min on 2 cores)
    python bench/model_latency.py --presets s --runs 50 # the node's preset only
    python bench/model_latency.py --compile             # also try torch.compile on posemoe-s

Backends: torch eager; onnxruntime with `threads` intra-op threads; "onnxruntime batch-parallel"
with `threads` single-threaded sessions each running a share of the batch (what the node uses);
torch.compile (inductor, --compile, B=5 only since each new shape recompiles).
Batch B = B windows = B tracked people (the node runs one forward per frame over all of them).
Latency: median (and p90) of `--runs` forwards after warm-up, inference mode, fp32; rows whose
single forward is slow get fewer runs (--row-budget seconds per row; at least 3, or 1 for
forwards over a second: presets b and l, timed at 2 threads only, --large-threads).
"load" is the 1-minute load average when the row finished (this bench itself adds 1-2): on a
shared machine, rows taken under more load are pessimistic, torch with 2 OpenMP threads most.
Peak: the best of a few 2048^3 fp32 torch.matmul at the same thread count (what this CPU really
sustains, not the datasheet), or threads x the 1-thread figure where that is higher (a
neighbour's load depresses the 2-thread matmul more). MACs per frame as in
bench/model_complexity.py (one window's FLOPs / 2 / T). Writes a Markdown table to stdout and
CSV + JSON to --out. fp16 / bf16 rows need CUDA (not on this machine).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from model_complexity import macs_per_frame  # noqa: E402

from posemoe_ros.models import MODEL_NAMES, build_model  # noqa: E402
from posemoe_ros.models.export import OnnxLifter, export_onnx  # noqa: E402


def matmul_peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best fp32 GFLOP/s of an n^3 matmul at this thread count."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def time_forward(fn, runs: int, row_budget: float) -> list[float]:
    """Seconds of `runs` calls after warm-up; fewer when one call is slow (>= 3, or 1 for calls
    over a second: the large presets' big matmuls vary little from run to run)."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    if once < 1.0:
        fn()  # a second warm-up where it is cheap (allocator, thread pools)
    runs = min(runs, max(1 if once >= 1.0 else 3, int(row_budget / max(once, 1e-6))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def compiled(model):
    """torch.compile (inductor) of the model, or None with the reason printed if it fails."""
    try:
        return torch.compile(model, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - a probe: report, do not abort the grid
        print(f"torch.compile unavailable: {exc!r}", file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="s,b,l")
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--batches", default="1,5,10")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--backends", default="torch,onnxruntime")
    ap.add_argument("--large-threads", default="2", help="thread counts for presets b and l (they are slow)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--row-budget", type=float, default=3.0, help="seconds of timed runs per row (>= 3 runs)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on posemoe-s at B=5")
    ap.add_argument("--out", default=str(REPO / "out" / "bench"))
    args = ap.parse_args()
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    batches, backends = [int(b) for b in split(args.batches)], split(args.backends)
    threads_small, threads_large = [int(t) for t in split(args.threads)], [int(t) for t in split(args.large_threads)]

    measured = {t: matmul_peak_gflops(t) for t in sorted(set(threads_small + threads_large) | {1})}
    # A busy neighbour halves a 2-thread matmul; t x the 1-thread figure keeps the fractions honest.
    peaks = {t: max(g, t * measured[1]) for t, g in measured.items()}
    rows = []
    header = ["model", "preset", "T", "MMACs/frame", "backend", "threads", "B", "median ms", "p90 ms",
              "GFLOP/s", "% of peak", "runs", "load"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in split(args.presets):
            for name in split(args.models):
                torch.manual_seed(0)
                model = build_model(name, preset).eval()
                T = model.config.num_frames
                macs = macs_per_frame(model)
                engines = {}
                if "torch" in backends:
                    engines["torch"] = lambda x, m=model: m(torch.from_numpy(x)).numpy()
                if "onnxruntime" in backends:
                    path = export_onnx(model, Path(tmp) / f"{name}_{preset}.onnx")
                    engines["onnxruntime"] = path
                    engines["onnxruntime batch-parallel"] = path  # the node's default engine
                if args.compile and (name, preset) == ("posemoe", "s"):
                    c = compiled(model)
                    if c is not None:
                        engines["torch.compile"] = lambda x, m=c: m(torch.from_numpy(x)).numpy()
                for threads in (threads_small if preset == "s" else threads_large):
                    torch.set_num_threads(threads)
                    for backend, engine in engines.items():
                        if backend == "onnxruntime batch-parallel" and threads == 1:
                            continue  # one session: the same as plain onnxruntime
                        if backend == "onnxruntime":
                            run = OnnxLifter(engine, intra_op_threads=threads)
                        elif backend == "onnxruntime batch-parallel":
                            run = OnnxLifter(engine, batch_parallel=threads)
                        else:
                            run = engine
                        for B in batches:
                            if backend == "torch.compile" and B != 5:
                                continue  # every new shape recompiles (~40 s each on 2 cores)
                            x = np.random.default_rng(B).normal(size=(B, T, 17, 3)).astype(np.float32)
                            with torch.inference_mode():
                                if backend == "torch.compile":
                                    run(x)  # compiles for this shape (tens of seconds), not timed
                                times = time_forward(lambda: run(x), args.runs, args.row_budget)
                            med, p90 = statistics.median(times), float(np.percentile(times, 90))
                            gflops = 2 * macs * T * B / med / 1e9
                            row = dict(model=name, preset=preset, T=T, mmacs_per_frame=round(macs / 1e6, 2),
                                       backend=backend, threads=threads, batch=B, median_ms=round(1e3 * med, 2),
                                       p90_ms=round(1e3 * p90, 2), gflops=round(gflops, 2),
                                       peak_fraction=round(gflops / peaks[threads], 4), runs=len(times),
                                       load1=round(os.getloadavg()[0], 2))
                            rows.append(row)
                            print("| " + " | ".join(str(v) for v in (
                                name, preset, T, row["mmacs_per_frame"], backend, threads, B, row["median_ms"],
                                row["p90_ms"], row["gflops"], f"{100 * row['peak_fraction']:.1f}",
                                len(times), row["load1"])) + " |", flush=True)

    machine = dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                   torch=torch.__version__, date=datetime.date.today().isoformat(),
                   matmul_measured_gflops={str(t): round(g, 1) for t, g in measured.items()},
                   peak_used_gflops={str(t): round(g, 1) for t, g in peaks.items()})
    try:
        import onnxruntime
        machine["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    print("\nmatmul (fp32, 2048^3) measured: " + ", ".join(f"{t} thread(s) {g:.1f}" for t, g in measured.items())
          + " GFLOP/s; peak used for '% of peak': " + ", ".join(f"{t}: {g:.1f}" for t, g in peaks.items()))
    print(json.dumps(machine))
    ratio_rows = ratios(rows)
    if ratio_rows:
        print("\nPoseMoE latency / baseline latency at the same window, backend, threads and batch:")
        print("| preset | backend | threads | B | / entangled | / tcn |\n|---|---|---|---|---|---|")
        for r in ratio_rows:
            print(f"| {r['preset']} | {r['backend']} | {r['threads']} | {r['batch']} | {r['entangled']} | {r['tcn']} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_latency.json").write_text(json.dumps(dict(machine=machine, rows=rows, ratios=ratio_rows), indent=1))
    with open(out / "model_latency.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def ratios(rows: list[dict]) -> list[dict]:
    """PoseMoE's median latency divided by each baseline's, row by matching row."""
    key = lambda r: (r["preset"], r["backend"], r["threads"], r["batch"])  # noqa: E731
    by_model = {m: {key(r): r["median_ms"] for r in rows if r["model"] == m} for m in MODEL_NAMES}
    out = []
    for k, ms in by_model.get("posemoe", {}).items():
        if any(k in by_model[m] for m in ("entangled", "tcn")):
            out.append(dict(zip(("preset", "backend", "threads", "batch"), k),
                            **{m: (f"{ms / by_model[m][k]:.2f}" if k in by_model[m] else "–")
                               for m in ("entangled", "tcn")}))
    return out


if __name__ == "__main__":
    main()
