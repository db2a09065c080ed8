"""Which model wins at a fixed training budget: train each model for the same training compute (FLOPs)
from scratch, then score it on the val split under the evaluation protocol. Never on test.

    python bench/scaling_study.py --data-dir ../shared/data --budget-tflop 15 --out runs/scaling \
        --models posemoe:dim=32,heads=2 posemoe posemoe:dim=64,heads=4 entangled tcn       # docs/results.md

Each model trains with posemoe-train's recipe (its config/train/NAME_s.yaml: data, loss, optimiser,
batch) for steps = budget / (FLOPs of one training step), the step counted with
torch.utils.flop_counter on one forward + backward at the run's batch and sequence length (CPU flash
attention counted by hand, bench/train_throughput.py). Warm-up is a fifteenth of the steps, validation
four times a run. FLOPs, not seconds, fix the budget: timings on a shared 2-core machine move with the
load, FLOPs do not; the CPU-minutes each run took are reported beside them (small matrices reach a
smaller fraction of the matmul peak, so equal FLOPs are not equal minutes).
After training, best.safetensors is evaluated on the val split (with extra_h36m17.npz when present) at
--eval-stride: causal (no lookahead) and centre (the most lookahead the model offers) MPJPE, P-MPJPE.
Rows are appended to OUT/results.csv (a model already there is skipped, so a stopped study goes on
where it stopped, and a model whose training finished is only evaluated); OUT/scaling.png plots val
MPJPE against training compute (with each run's validations on the way) and CPU time.
Models: NAME[:key=value,...] (build_model overrides of preset s); LABEL=NAME[:...] names the run.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import parse_model, step_flops  # noqa: E402

COLUMNS = ["label", "model", "overrides", "params", "budget_tflop", "gflop_per_step", "steps", "batch",
           "sequence_frames", "cpu_minutes", "val_causal_mpjpe_mm", "val_centre_mpjpe_mm",
           "val_causal_p_mpjpe_mm", "val_centre_p_mpjpe_mm", "weights"]


def train_config(name: str, overrides: dict):
    from posemoe_ros.training.train import load_config
    cfg = load_config(ROOT / "config" / "train" / f"{name}_s.yaml")
    cfg.model.overrides = {**cfg.model.overrides, **overrides}
    return cfg


def flops_per_step(cfg) -> tuple[float, int, int]:
    """(FLOPs of one training step, parameters, sequence length) at cfg's batch."""
    from posemoe_ros.models import build_model
    from posemoe_ros.training.train import sequence_frames
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides)
    length = sequence_frames(cfg, model)
    x = torch.randn(cfg.optim.batch_size, length, 17, 3)
    y = torch.randn(cfg.optim.batch_size, length, 17, 3) * 0.3
    return step_flops(model, x, y), sum(p.numel() for p in model.parameters()), length


def val_clips(data_dir: Path):
    from posemoe_ros.data.splits import make_splits
    extra = data_dir / "extra_h36m17.npz"
    return make_splits(data_dir / "bandai_h36m17.npz", data_dir / "cmu_h36m17.npz",
                       extra_path=extra if extra.exists() else None)["val"]


def study_one(label: str, spec: str, args, done: set) -> dict | None:
    from posemoe_ros.models.weights import load_model, model_metadata
    from posemoe_ros.training.evaluate import evaluate_clips
    from posemoe_ros.training.train import train
    if label in done:
        print(f"{label}: in results.csv, skipped")
        return None
    name, overrides = parse_model(spec)
    cfg = train_config(name, overrides)
    cfg.optim.num_threads = args.threads
    flops, params, length = flops_per_step(cfg)
    steps = max(20, round(args.budget_tflop * 1e12 / flops))
    cfg.optim.steps, cfg.optim.warmup_steps = steps, max(5, steps // 15)
    cfg.optim.val_every, cfg.optim.log_every = max(1, steps // 4), max(1, steps // 40)
    print(f"{label}: {params / 1e3:.0f}k params, {flops / 1e9:.1f} GFLOP/step -> {steps} steps", flush=True)
    out = args.out / label
    data = args.data_dir
    extra = data / "extra_h36m17.npz"
    state = out / "state.json"
    if state.exists() and json.loads(state.read_text())["step"] >= steps:
        print(f"{label}: trained already ({out}), evaluating")  # a study stopped during evaluation
    else:
        train(cfg, data / "bandai_h36m17.npz", data / "cmu_h36m17.npz", out, progress=False,
              extra=extra if extra.exists() else None)
    weights = out / "best.safetensors"
    result = evaluate_clips(load_model(weights), val_clips(data), stride=args.eval_stride, progress=False)
    c, k = result["centre"], result["causal"]
    row = {"label": label, "model": name, "overrides": spec.partition(":")[2], "params": params,
           "budget_tflop": args.budget_tflop, "gflop_per_step": f"{flops / 1e9:.2f}", "steps": steps,
           "batch": cfg.optim.batch_size, "sequence_frames": length,
           "cpu_minutes": f"{60 * float(model_metadata(out / 'last.safetensors')['cpu_hours']):.1f}",
           "val_causal_mpjpe_mm": f"{k['mpjpe_mm']:.1f}", "val_centre_mpjpe_mm": f"{c['mpjpe_mm']:.1f}",
           "val_causal_p_mpjpe_mm": f"{k['p_mpjpe_mm']:.1f}", "val_centre_p_mpjpe_mm": f"{c['p_mpjpe_mm']:.1f}",
           "weights": str(weights)}
    print(", ".join(f"{key} {row[key]}" for key in COLUMNS), flush=True)
    return row


def plot(rows: list[dict], path: Path):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for n, r in enumerate(rows):
        colour = f"C{n % 10}"
        total = float(r["gflop_per_step"]) * int(r["steps"]) / 1e3
        for ax, x in zip(axes, (total, float(r["cpu_minutes"]))):
            ax.scatter(x, float(r["val_causal_mpjpe_mm"]), marker="o", color=colour)
            ax.annotate(f"{r['label']} ({int(r['params']) / 1e3:.0f}k)", (x, float(r["val_causal_mpjpe_mm"])),
                        fontsize=8, xytext=(4, 4), textcoords="offset points")
        # the run's own validations on the way (the 256-window val subset of posemoe-train, causal
        # frame): how the score fell with compute, not only where it ended
        log = Path(r["weights"]).parent / "log.csv"
        if log.exists():
            points = [(int(v["step"]) * float(r["gflop_per_step"]) / 1e3, float(v["val_last_mpjpe_mm"]))
                      for v in csv.DictReader(log.open()) if v.get("val_last_mpjpe_mm")]
            if points:
                axes[0].plot(*zip(*points), ls="--", lw=1, color=colour, alpha=0.7)
    axes[0].set_xlabel("training compute (TFLOP); dashed: the run's validations on the way")
    axes[0].set_xscale("log")  # budgets of a study differ by factors
    axes[0].xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    axes[0].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[1].set_xlabel("CPU-minutes (1 thread, shared machine)")
    for ax in axes:
        ax.set_ylabel("val causal MPJPE (mm)")
        ax.grid(alpha=0.3)
    fig.suptitle("Equal training compute, val split (never test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--budget-tflop", type=float, default=15.0, help="training FLOPs per model, 1e12")
    ap.add_argument("--models", nargs="+", default=["posemoe:dim=32,heads=2", "posemoe", "posemoe:dim=64,heads=4",
                                                    "entangled", "tcn"])
    ap.add_argument("--out", type=Path, default=Path("runs/scaling"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-stride", type=int, default=8)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "results.csv"
    rows = list(csv.DictReader(table.open())) if table.exists() else []
    for item in args.models:
        label, _, spec = item.partition("=") if "=" in item.split(":")[0] else (None, None, item)
        label = label or spec.replace(":", "_").replace(",", "_").replace("=", "")
        row = study_one(label, spec, args, {r["label"] for r in rows})
        if row is None:
            continue
        rows.append(row)
        with table.open("w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        plot(rows, args.out / "scaling.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
