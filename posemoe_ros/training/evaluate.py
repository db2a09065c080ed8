"""Evaluate lifting weights on motion-capture clips under the fixed evaluation protocol.

    posemoe-eval --weights W.safetensors --data PATH.npz [--clips all|SUBSTRING] [--out DIR] [--flip-tta]
    posemoe-eval --weights W.safetensors --split test --data-dir DIR      # held-out CMU subjects

Protocol (docs/training.md): every clip is cut into windows (stride --stride): the model's length T
for a full-window model, the length it was trained on (2W-1) for a streaming one, which then runs
from the window's first frame as a new track would. Each window gets a fixed, seeded synthetic
camera and detector noise (LiftingWindows with deterministic=True, seed = --seed + clip index, no
bone augmentation), every frame turned onto the optical axis as the node does. Frame metrics:
"causal" is the last frame with no lookahead; "centre" the most lookahead the model offers (a
full-window model's centre frame, T//2 frames ahead; a streaming model's max_lookahead); and
lookahead k (frame T-1-k, for a streaming model the output with delay k). MPJVE is over all frames
of each window (no lookahead). Writes metrics.json, results.md and eval.png to --out.
"""
import argparse
import fnmatch
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from posemoe_ros import metrics
from posemoe_ros.models.streaming import is_streaming
from posemoe_ros.skeleton import JOINT_NAMES

LOOKAHEADS = (0, 2, 4, 8, 13)


def protocol_frames(model) -> int:
    """Window length of the protocol: T, or for a streaming model the length it was trained on."""
    W = model.config.num_frames
    return 2 * W - 1 if is_streaming(model) else W


def lookaheads(model) -> tuple[int, ...]:
    top = model.config.max_lookahead if is_streaming(model) else protocol_frames(model) - 1
    return tuple(k for k in LOOKAHEADS if k <= top)


@torch.no_grad()
def predict(model, dataset, batch_size: int, flip_tta: bool, device, delay: int = 0):
    """Run the model over every window: (pred, target), each (N, T, J, 3) on the CPU; with a delay
    (streaming models) output t answers for frame t - delay."""
    from posemoe_ros.models.flip import flip_tta as flip_average
    from posemoe_ros.training.train import on_axis
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    run = (lambda x: model(x, delay=delay)) if delay else model
    preds, targets = [], []
    for batch in loader:
        x, target = on_axis(batch)
        x = x.to(device)
        y = flip_average(run, x) if flip_tta else run(x)
        preds.append(y.float().cpu())
        targets.append(target)
    return torch.cat(preds), torch.cat(targets)


def frame_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Metrics of one frame per window, (N, J, 3): mm, PCK/AUC fractions, per-joint MPJPE."""
    out = metrics.summarize(pred, target)
    pj = metrics.per_joint(metrics.joint_errors(pred, target)) * 1000
    out["per_joint_mpjpe_mm"] = {name: round(float(v), 2) for name, v in zip(JOINT_NAMES, pj)}
    return out


def evaluate_clips(model, clips, stride: int = 4, seed: int = 0, flip_tta: bool = False,
                   batch_size: int = 64, device="cpu", progress: bool = True) -> dict:
    """Every metric of model on clips under the protocol above (a JSON-ready dict)."""
    from posemoe_ros.data.windows import LiftingWindows
    model.eval()
    t = protocol_frames(model)
    streaming = is_streaming(model)
    ks = lookaheads(model)
    centre_k = ks[-1] if streaming else t // 2
    preds, targets, per_clip = [], [], {}
    ahead = {k: [] for k in ks}  # streaming: frame T-1-k answered with delay k, (N, J, 3) each
    for i, clip in enumerate(tqdm(clips, desc="clips", disable=not progress, dynamic_ncols=True)):
        ds = LiftingWindows([clip], t, stride=stride, seed=seed + i, augment=False, deterministic=True)
        if len(ds) == 0:
            continue
        p, y = predict(model, ds, batch_size, flip_tta, device)
        preds.append(p)
        targets.append(y)
        for k in ks:
            ahead[k].append(predict(model, ds, batch_size, flip_tta, device, k)[0][:, -1] if streaming and k
                            else p[:, -1 - k])
        per_clip[clip.name] = {
            "windows": len(ds),
            "centre_mpjpe_mm": round(1000 * metrics.mpjpe(ahead[centre_k][-1] if streaming else p[:, t // 2],
                                                          y[:, t - 1 - centre_k]), 2),
            "causal_mpjpe_mm": round(1000 * metrics.mpjpe(p[:, -1], y[:, -1]), 2)}
    if not preds:
        raise ValueError(f"no clip is long enough for {t}-frame windows")
    pred, target = torch.cat(preds), torch.cat(targets)                  # (N, T, J, 3)
    ahead = {k: torch.cat(v) for k, v in ahead.items()}
    lookahead = {str(k): {"mpjpe_mm": 1000 * metrics.mpjpe(ahead[k], target[:, t - 1 - k]),
                          "p_mpjpe_mm": 1000 * metrics.p_mpjpe(ahead[k], target[:, t - 1 - k])} for k in ks}
    centre_pred = ahead[centre_k] if streaming else pred[:, t // 2]
    return {
        "num_frames": t, "num_clips": len(per_clip), "num_windows": int(pred.shape[0]),
        "protocol": {"stride": stride, "seed": seed, "flip_tta": flip_tta,
                     "windows": "LiftingWindows(deterministic=True, augment=False), seed+clip index"},
        "streaming": streaming, "centre_lookahead": centre_k,
        "centre": frame_metrics(centre_pred, target[:, t - 1 - centre_k]),
        "causal": frame_metrics(pred[:, -1], target[:, -1]),
        "mpjve_mm_per_frame": 1000 * metrics.mpjve(pred, target),
        "window_mpjpe_mm": 1000 * metrics.mpjpe(pred, target),
        "lookahead": lookahead,
        "per_clip": per_clip,
    }


# -----------------------------------------------------------------------------
# reports

SUMMARY_KEYS = [("mpjpe_mm", "MPJPE (mm)"), ("p_mpjpe_mm", "P-MPJPE (mm)"), ("n_mpjpe_mm", "N-MPJPE (mm)"),
                ("pck150", "PCK@150"), ("auc", "AUC")]


def markdown(result: dict, title: str) -> str:
    head = "| frame | " + " | ".join(n for _, n in SUMMARY_KEYS) + " |"
    lines = [f"### {title}", "",
             f"{result['num_clips']} clips, {result['num_windows']} windows of {result['num_frames']} frames "
             f"(stride {result['protocol']['stride']}, seed {result['protocol']['seed']}"
             f"{', flip TTA' if result['protocol']['flip_tta'] else ''}); "
             f"MPJVE {result['mpjve_mm_per_frame']:.2f} mm/frame.", "",
             head, "|" + "---|" * (len(SUMMARY_KEYS) + 1)]
    centre = f"centre (lookahead {result['centre_lookahead']})"
    for mode, label in (("centre", centre), ("causal", "causal (last)")):
        m = result[mode]
        lines.append(f"| {label} | " + " | ".join(
            f"{m[k]:.1f}" if k.endswith("_mm") else f"{m[k]:.3f}" for k, _ in SUMMARY_KEYS) + " |")
    la = result["lookahead"]
    lines += ["", "| lookahead (frames) | " + " | ".join(la) + " |", "|---|" + "---|" * len(la),
              "| MPJPE (mm) | " + " | ".join(f"{v['mpjpe_mm']:.1f}" for v in la.values()) + " |", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
    x = np.arange(len(JOINT_NAMES))
    for off, mode in ((-0.2, "centre"), (0.2, "causal")):
        a.bar(x + off, list(result[mode]["per_joint_mpjpe_mm"].values()), width=0.4, label=mode)
    a.set_xticks(x, JOINT_NAMES, rotation=60, ha="right", fontsize=8)
    a.set(ylabel="MPJPE (mm)", title="per joint")
    a.legend()
    ks = [int(k) for k in result["lookahead"]]
    b.plot(ks, [v["mpjpe_mm"] for v in result["lookahead"].values()], "o-", label="MPJPE")
    b.plot(ks, [v["p_mpjpe_mm"] for v in result["lookahead"].values()], "s-", label="P-MPJPE")
    b.set(xlabel="lookahead (frames)", ylabel="mm", title="error vs lookahead")
    b.legend()
    c.hist([v["centre_mpjpe_mm"] for v in result["per_clip"].values()], bins=20)
    c.set(xlabel="centre MPJPE (mm)", ylabel="clips", title="per clip")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -----------------------------------------------------------------------------

def load_clip_set(args) -> tuple[list, str]:
    """Clips to evaluate and a label, from --data/--clips or --split with the data files."""
    if args.split:
        from posemoe_ros.data.splits import make_splits
        base = Path(args.data_dir) if args.data_dir else None
        bandai = Path(args.bandai) if args.bandai else base / "bandai_h36m17.npz"
        cmu = Path(args.cmu) if args.cmu else base / "cmu_h36m17.npz"
        return make_splits(bandai, cmu)[args.split], f"{args.split} split"
    from posemoe_ros.data.mocap import load_clips
    clips = load_clips(args.data)
    if args.clips != "all":
        pattern = args.clips if any(ch in args.clips for ch in "*?[") else f"*{args.clips}*"
        clips = [c for c in clips if fnmatch.fnmatch(c.name, pattern)]
    return clips, f"{Path(args.data).name} ({args.clips})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="posemoe-eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="safetensors weights (models.weights format)")
    ap.add_argument("--data", help="npz in the shared format; evaluates its clips (see --clips)")
    ap.add_argument("--clips", default="all", help="'all' or a clip-name glob/substring (with --data)")
    ap.add_argument("--split", choices=["train", "val", "test"],
                    help="evaluate a split of splits.make_splits (needs --data-dir or --bandai/--cmu)")
    ap.add_argument("--data-dir", help="folder with bandai_h36m17.npz and cmu_h36m17.npz (with --split)")
    ap.add_argument("--bandai")
    ap.add_argument("--cmu")
    ap.add_argument("--out", default="out/eval", help="output folder")
    ap.add_argument("--flip-tta", action="store_true", help="average with the mirrored input's prediction")
    ap.add_argument("--stride", type=int, default=4, help="frames between window starts")
    ap.add_argument("--seed", type=int, default=0, help="protocol seed (cameras and noise)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = library default")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if bool(args.data) == bool(args.split):
        ap.error("give exactly one of --data or --split")
    if args.split and not (args.data_dir or (args.bandai and args.cmu)):
        ap.error("--split needs --data-dir or --bandai and --cmu")

    from posemoe_ros.models.weights import load_model
    model = load_model(args.weights, device=args.device)
    clips, label = load_clip_set(args)
    t0 = time.time()
    result = evaluate_clips(model, clips, args.stride, args.seed, args.flip_tta, args.batch_size,
                            args.device, progress=not args.no_progress)
    result.update(weights=str(args.weights), data=label, seconds=round(time.time() - t0, 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w = Path(args.weights)
    title = f"{w.parent.name}/{w.stem} on {label}" if w.stem in ("best", "last") else f"{w.stem} on {label}"
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(markdown(result, title))
    plot(result, out / "eval.png", title)
    c, k = result["centre"], result["causal"]
    print(f"{title}: centre MPJPE {c['mpjpe_mm']:.1f} mm, P-MPJPE {c['p_mpjpe_mm']:.1f} mm; "
          f"causal MPJPE {k['mpjpe_mm']:.1f} mm, P-MPJPE {k['p_mpjpe_mm']:.1f} mm -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
