"""Parameters, MACs per frame and CPU latency of every model x preset, as a Markdown table.

    python bench/model_complexity.py [--threads 2] [--runs 20] [--time-presets s] [--onnx]

MACs come from torch.utils.flop_counter (MACs = FLOPs / 2) for one window, divided by its T
frames since every model predicts all frames (seq2seq). Latency is the median forward time at
batch 1 and 5 (5 windows = 5 tracked people) in inference mode; --onnx adds onnxruntime times
for the same file the node can load (OnnxLifter).
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posemoe_ros.models import MODEL_NAMES, PRESETS, build_model  # noqa: E402


def _cpu_sdpa_flops(q, k, v, *args, **kwargs) -> int:
    """FLOPs of softmax(QK^T)V; torch counts SDPA only for its GPU kernels (shapes (B,h,L,d))."""
    B, h, L, d = q
    return 2 * 2 * B * h * L * k[-2] * d  # QK^T and AV, causal counted in full


SDPA_CPU = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def macs_per_frame(model) -> float:
    T = model.config.num_frames
    x = torch.zeros(1, T, model.config.num_joints, 3)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=SDPA_CPU) as counter:
        model(x)
    return counter.get_total_flops() / 2 / T


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up (allocator, kernels)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--time-presets", default="s", help="comma list of presets to time ('' for none)")
    ap.add_argument("--onnx", action="store_true", help="also time onnxruntime (same thread count)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timed = set(filter(None, args.time_presets.split(",")))

    cols = ["model", "preset", "T", "params (M)", "MMACs / frame", "torch B=1 (ms)", "torch B=5 (ms)"]
    if args.onnx:
        cols += ["ORT B=1 (ms)", "ORT B=5 (ms)"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for name in MODEL_NAMES:
        for preset in PRESETS[name]:
            model = build_model(name, preset).eval()
            T = model.config.num_frames
            row = [name, preset, str(T), f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f}",
                   f"{macs_per_frame(model) / 1e6:.2f}"]
            times = ["–"] * (4 if args.onnx else 2)
            if preset in timed:
                xs = {B: torch.randn(B, T, model.config.num_joints, 3) for B in (1, 5)}
                with torch.inference_mode():
                    times[:2] = [f"{median_ms(lambda: model(xs[B]), args.runs):.2f}" for B in (1, 5)]
                if args.onnx:
                    from posemoe_ros.models.export import OnnxLifter, export_onnx
                    with tempfile.TemporaryDirectory() as tmp:
                        lifter = OnnxLifter(export_onnx(model, Path(tmp) / "m.onnx"), intra_op_threads=args.threads)
                        times[2:] = [f"{median_ms(lambda: lifter(xs[B].numpy()), args.runs):.2f}" for B in (1, 5)]
            print("| " + " | ".join(row + times) + " |", flush=True)
    print(f"\ntorch {torch.__version__}, {args.threads} thread(s), median of {args.runs} runs")


if __name__ == "__main__":
    main()
