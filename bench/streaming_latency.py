"""Cost per output frame of a streaming model: the cached one-frame step against the full-window
forward the node used to run every frame (a whole W-frame window per person, one frame kept).

    python bench/streaming_latency.py                         # posemoe and entangled, preset s
    python bench/streaming_latency.py --models posemoe --people 1,5,10,30 --threads 1,2
    python bench/streaming_latency.py --weights posemoe_ros/weights/posemoe_s.safetensors --device cuda

Rows: model x path (step | window) x backend (torch | onnxruntime: intra-op threads, and the
node's default "batch-parallel", one single-threaded session per thread each lifting a share of
the people) x threads x people P. Latency: median and p90 of --runs calls after warm-up, fp32,
inference mode; the step is fed a full cache (W-1 past frames), as a track in steady state.
MMACs per frame from torch.utils.flop_counter (MACs = FLOPs / 2; attention included): for the
window path one window's MACs, since it computes a window per output frame. "% of peak": the
row's GFLOP/s over the best 2048^3 fp32 matmul of this run at the same thread count.
With --device cuda the rows are the node's CUDA path instead (lifter.torch_step, as Lifter runs it): numpy
keypoints and cache copied to the GPU in fp16 (what the node runs) or fp32, one step, pose and
cache copied back, so a row's time includes both transfers; "% of peak" is then against a
4096^3 matmul on the GPU in the row's dtype.
Writes a Markdown table to stdout and JSON to --out.
"""
from __future__ import annotations

import argparse
import copy
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
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from model_complexity import SDPA_CPU  # noqa: E402
from model_latency import matmul_peak_gflops, time_forward  # noqa: E402

from posemoe_ros.models import build_model  # noqa: E402
from posemoe_ros.models.export import OnnxLifter, OnnxStep, export_onnx  # noqa: E402
from posemoe_ros.models.streaming import StreamingStep, empty_cache  # noqa: E402
from posemoe_ros.pipeline.lifter import torch_step, torch_window  # noqa: E402


def full_cache(model, P: int):
    past, ages = empty_cache(model, P)
    past.normal_()
    ages[:] = torch.arange(1, ages.shape[1] + 1)
    return past, ages


def cuda_matmul_peak_gflops(dtype, n: int = 4096, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    torch.matmul(a, b)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def node_path_calls(step, window, x1, xw, past, ages) -> dict:
    """The node's torch engine (lifter.torch_step, and torch_window for the full window it ran
    before) for models already on the GPU in their dtype: numpy in, copied over in that dtype, the
    result copied back to numpy (which waits for the GPU, so a call's time is the whole frame's)."""
    w = next(window.parameters())
    x1, xw, past, ages = x1.numpy(), xw.numpy(), past.numpy(), ages.numpy()
    return {"step": lambda: torch_step(step, x1, past, ages, 0, w.device, w.dtype),
            "window": lambda: torch_window(window, xw, w.device, w.dtype)}


def flops(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=SDPA_CPU) as counter:
        fn()
    return counter.get_total_flops()


def window_onnx(model, path):
    """The full-window path as ONNX: the model over (P,W,J,3), as the node ran it before streaming."""
    class Window(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m, self.config = m, m.config

        def forward(self, x):
            return self.m(x)

    window = Window(model).eval()
    W = model.config.num_frames
    torch.onnx.export(window, (torch.zeros(2, W, 17, 3),), str(path), opset_version=17, dynamo=False,
                      input_names=["keypoints"], output_names=["pose"],
                      dynamic_axes={"keypoints": {0: "batch"}, "pose": {0: "batch"}})
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="posemoe,entangled")
    ap.add_argument("--preset", default="s")
    ap.add_argument("--weights", help="a weights file instead of --models/--preset (e.g. the shipped default)")
    ap.add_argument("--people", default="1,5,10,30")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--backends", default="torch,onnxruntime")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--row-budget", type=float, default=2.0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the node's CUDA path in --dtypes instead of the CPU backends")
    ap.add_argument("--dtypes", default="fp16,fp32", help="with --device cuda")
    ap.add_argument("--out", default=str(REPO / "out" / "bench"))
    args = ap.parse_args()
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    people, threads, backends = [int(p) for p in split(args.people)], [int(t) for t in split(args.threads)], split(args.backends)
    dtypes = {"fp16": torch.float16, "fp32": torch.float32}
    if args.device == "cuda":
        threads, backends = [1], []
        peaks = {d: cuda_matmul_peak_gflops(dtypes[d]) for d in split(args.dtypes)}
    else:
        peaks = {t: matmul_peak_gflops(t) for t in threads}

    if args.weights:
        from posemoe_ros.models.weights import load_model
        models = {Path(args.weights).stem: load_model(args.weights)}
    else:
        torch.manual_seed(0)
        models = {f"{n}-{args.preset}": build_model(n, args.preset).eval() for n in split(args.models)}
    header = ["model", "path", "backend", "threads", "P", "MMACs/frame/person", "median ms", "p90 ms", "GFLOP/s",
              "% of peak", "load"]
    print("| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models.items():
            W, step = model.config.num_frames, StreamingStep(model).eval()
            past1, ages1 = full_cache(model, 1)
            macs = {"step": flops(lambda: step(torch.zeros(1, 17, 3), past1, ages1, torch.tensor(0))) / 2,
                    "window": flops(lambda: model(torch.zeros(1, W, 17, 3))) / 2}
            onnx = {}
            if "onnxruntime" in backends:
                onnx = {"step": export_onnx(model, Path(tmp) / f"{label}-step.onnx"),
                        "window": window_onnx(model, Path(tmp) / f"{label}-window.onnx")}
            for t in threads:
                torch.set_num_threads(t)
                engines = []
                if "torch" in backends:
                    engines.append(("torch", lambda: step, lambda: model))
                if "onnxruntime" in backends:
                    engines.append(("onnxruntime", lambda: OnnxStep(onnx["step"], intra_op_threads=t),
                                    lambda: OnnxLifter(onnx["window"], intra_op_threads=t)))
                    if t > 1:
                        engines.append(("onnxruntime batch-parallel",
                                        lambda: OnnxStep(onnx["step"], batch_parallel=t),
                                        lambda: OnnxLifter(onnx["window"], batch_parallel=t)))
                for d in peaks if args.device == "cuda" else []:   # the model moved once per dtype
                    on_gpu = copy.deepcopy(model).to("cuda", dtypes[d])
                    engines.append((f"torch cuda {d}", lambda m=on_gpu: StreamingStep(m).eval(), lambda m=on_gpu: m))
                for backend, make_step, make_window in engines:
                    run_step, run_window = make_step(), make_window()
                    for P in people:
                        past, ages = full_cache(model, P)
                        x1 = torch.randn(P, 17, 3)
                        xw = torch.randn(P, W, 17, 3)
                        if backend.startswith("torch cuda"):
                            calls = node_path_calls(run_step, run_window, x1, xw, past, ages)
                        elif backend == "torch":
                            calls = {"step": lambda: run_step(x1, past, ages, torch.tensor(0)),
                                     "window": lambda: run_window(xw)}
                        else:
                            pn, an, xn, xwn = past.numpy(), ages.numpy(), x1.numpy(), xw.numpy()
                            calls = {"step": lambda: run_step(xn, pn, an, 0), "window": lambda: run_window(xwn)}
                        for path, call in calls.items():
                            with torch.inference_mode():
                                times = time_forward(call, args.runs, args.row_budget)
                            med, p90 = statistics.median(times), float(np.percentile(times, 90))
                            gflops = 2 * macs[path] * P / med / 1e9
                            peak = peaks[backend.split()[-1]] if args.device == "cuda" else peaks[t]
                            row = dict(model=label, path=path, backend=backend, threads=t, people=P,
                                       mmacs_per_frame=round(macs[path] / 1e6, 2), median_ms=round(1e3 * med, 3),
                                       p90_ms=round(1e3 * p90, 3), gflops=round(gflops, 2),
                                       peak_fraction=round(gflops / peak, 4), load1=round(os.getloadavg()[0], 2))
                            rows.append(row)
                            print("| " + " | ".join(str(v) for v in (
                                label, path, backend, t, P, row["mmacs_per_frame"], row["median_ms"], row["p90_ms"],
                                row["gflops"], f"{100 * row['peak_fraction']:.1f}", row["load1"])) + " |", flush=True)
    machine = dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
                   matmul_gflops={str(t): round(g, 1) for t, g in peaks.items()})
    if args.device == "cuda":
        print("\nmatmul (4096^3 on the GPU): " + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in peaks.items()))
    else:
        print("\nmatmul (fp32, 2048^3): " + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s" for t, g in peaks.items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "streaming_latency.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=1))


if __name__ == "__main__":
    main()
