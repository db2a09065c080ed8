"""Monocular root position error vs the body height the lifter assumes (`body_height`).

    python bench/root_depth.py [--data-dir ../shared/data] [--split test] [--stride 8] [--out out/bench/root]

Windows of the held-out split under the evaluation protocol (docs/training.md: seeded synthetic
cameras 1.5-8 m away and detector noise), twice: the mocap bodies as they are (CMU test subjects,
statures 1.58-1.68 m) and with bone-length augmentation (statures 1.5-2.0 m, as in training).
For each, the causal frame is lifted by the shipped model in the per-frame optical-axis view the
node uses (`optical_axis.py`), scaled as the lifter scales it
(`stature.scale_to_stature`) and placed by `root_translation.solve_root_translation`; the table
gives the root position error (m) and the depth error as a fraction of the true depth, for each
assumed height, for the model's own size (0) and for the person's true stature (oracle).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posemoe_ros.data.splits import make_splits  # noqa: E402
from posemoe_ros.data.windows import LiftingWindows  # noqa: E402
from posemoe_ros.geometry.optical_axis import rotate_points_back, view_on_axis  # noqa: E402
from posemoe_ros.geometry.root_translation import solve_root_translation  # noqa: E402
from posemoe_ros.geometry.stature import bone_lengths, scale_to_stature, standing_height  # noqa: E402
from posemoe_ros.models.weights import load_model  # noqa: E402
from posemoe_ros.pipeline.lifter import default_weights_path  # noqa: E402

HEIGHTS = (0.0, 1.60, 1.65, 1.70, 1.75, 1.80)


def causal_frames(model, clips, augment: bool, stride: int, seed: int = 0):
    """(input (N,17,3), truth root-relative (N,17,3), truth root (N,3), prediction (N,17,3)) of the last frame."""
    xs, ys, roots = [], [], []
    for i, clip in enumerate(clips):
        ds = LiftingWindows([clip], model.config.num_frames, stride=stride, seed=seed + i, augment=augment,
                            deterministic=True)
        for n in range(len(ds)):
            item = ds[n]
            xs.append(item["input"])
            ys.append(item["target"][-1])
            roots.append(item["root"][-1])
    x = np.stack(xs)
    # as the lifter does: each frame in a view turned onto the person's optical axis (how the model
    # was trained), the answered frame's 3D turned back into the camera frame with its own rotation
    view, R = view_on_axis(x)
    view = torch.from_numpy(view.astype(np.float32))
    with torch.inference_mode():
        pred = torch.cat([model(view[i:i + 256])[:, -1] for i in range(0, len(view), 256)]).numpy()
    pred = rotate_points_back(pred.astype(np.float64), R[:, -1])
    return x[:, -1].astype(np.float64), np.stack(ys).astype(np.float64), np.stack(roots).astype(np.float64), pred


def root_errors(pose_rel, x, root):
    """Placed by the reprojection fit: (root error (m), |depth error| / depth, median signed depth error)."""
    T, ok = solve_root_translation(pose_rel, x[..., :2], x[..., 2])
    signed = ((T[:, 2] - root[:, 2]) / root[:, 2])[ok]
    return np.linalg.norm(T - root, axis=-1)[ok], np.abs(signed), float(np.median(signed))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--weights", default=str(default_weights_path()))
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--stride", type=int, default=8, help="frames between window starts")
    ap.add_argument("--out", default="out/bench/root")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model(args.weights).eval()
    d = Path(args.data_dir)
    clips = make_splits(d / "bandai_h36m17.npz", d / "cmu_h36m17.npz")[args.split]
    rows, notes, lines = [], [], ["| bodies | body_height (m) | root error median (m) | p90 (m) | depth error median | p90 | "
                       "depth bias | MPJPE (mm) |", "|---|---|---|---|---|---|---|---|"]
    for augment in (False, True):
        x, truth, root, pred = causal_frames(model, clips, augment, args.stride)
        stature = standing_height(bone_lengths(truth))
        own = standing_height(bone_lengths(pred))  # the model's own stature per frame
        notes.append(f"{'augmented' if augment else 'mocap'}: model stature {own.mean():.2f} +- {own.std():.2f} m "
                     f"vs true {stature.mean():.2f} +- {stature.std():.2f} m; correlation "
                     f"{np.corrcoef(own, stature)[0, 1]:.2f}, slope {np.polyfit(stature, own, 1)[0]:.2f}")
        bodies = (f"{'augmented' if augment else 'mocap'} {stature.min():.2f}-{stature.max():.2f} m, "
                  f"n={len(x)}")
        for h in HEIGHTS + ("oracle",):
            pose = scale_to_stature(pred, stature if h == "oracle" else h) if h else pred
            err, rel, bias = root_errors(pose, x, root)
            mpjpe = 1000 * np.linalg.norm(pose - truth, axis=-1).mean()
            label = h if isinstance(h, str) else (f"{h:.2f}" if h else "0 (model's size)")
            row = dict(bodies=bodies, body_height=label, root_median_m=float(np.median(err)),
                       root_p90_m=float(np.percentile(err, 90)), depth_rel_median=float(np.median(rel)),
                       depth_rel_p90=float(np.percentile(rel, 90)), depth_bias=float(bias), mpjpe_mm=float(mpjpe))
            rows.append(row)
            lines.append(f"| {bodies} | {label} | {row['root_median_m']:.2f} | {row['root_p90_m']:.2f} | "
                         f"{row['depth_rel_median']:.1%} | {row['depth_rel_p90']:.1%} | {bias:+.1%} | {mpjpe:.1f} |")
        print("\n".join(lines[-len(HEIGHTS) - 1:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "root_depth.json").write_text(json.dumps(rows, indent=1))
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (out / "root_depth.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
