"""Pictures of lifted skeletons a person would rather look at than read (matplotlib, no ROS):
a sheet of predicted against true 3D skeletons, a GIF of the scene from the camera and from
above, and a latency histogram. Poses are H36M-17 (skeleton.JOINT_NAMES) in the camera optical
frame (x right, y down, z forward), metres.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402

from posemoe_ros.geometry.camera import project  # noqa: E402
from posemoe_ros.skeleton import BONES, LEFT, RIGHT  # noqa: E402

TRUTH_COLOUR = "0.55"
_SIDE_COLOUR = {**{j: "tab:blue" for j in LEFT}, **{j: "tab:red" for j in RIGHT}}


def id_colour(person_id: str):
    """A stable colour per person id (tab10 picked by a hash of the id)."""
    return plt.get_cmap("tab10")(zlib.crc32(person_id.encode()) % 10)


def _display(p: np.ndarray) -> np.ndarray:
    """Optical frame (x right, y down, z forward) -> plot axes (x right, y forward, z up)."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1)


def skeleton_sheet(path, pred: np.ndarray, truth: np.ndarray | None, titles: list[str]) -> Path:
    """One 3D panel per pose: pred (N,17,3) coloured (left blue, right red, spine black) over the
    truth (N,17,3) in grey, each centred on its own pelvis (shape, not position)."""
    path = Path(path)
    pred = np.asarray(pred, float)
    n = len(pred)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(3.2 * cols, 3.4 * rows), dpi=80)
    for k in range(n):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        poses = [(pred[k], None)] + ([(np.asarray(truth[k], float), TRUTH_COLOUR)] if truth is not None else [])
        for pose, colour in reversed(poses):
            q = _display(pose - pose[0])
            for a, b in BONES:
                c = colour or _SIDE_COLOUR.get(b, "k")
                ax.plot(*q[[a, b]].T, color=c, lw=2.5 if colour is None else 4, alpha=1 if colour is None else 0.6)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticklabels=[], yticklabels=[], zticklabels=[])
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=12, azim=-70)
        ax.set_title(titles[k] if k < len(titles) else "", fontsize=9)
    fig.suptitle("predicted (colour: left blue, right red) vs true (grey), pelvis-centred", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _frames_to_draw(num_frames: int, max_frames: int) -> np.ndarray:
    step = max(1, -(-num_frames // max(1, max_frames)))
    return np.arange(0, num_frames, step)


def scene_gif(path, tracks: dict[str, np.ndarray], K: np.ndarray, image_size: tuple[int, int], fps: float,
              truth: dict[str, np.ndarray] | None = None, max_frames: int = 300) -> Path:
    """Left: the camera's view (the 3D skeletons reprojected with K); right: the room from above
    (x right, z forward, camera at the origin). tracks: id -> (F,17,3), NaN rows where absent;
    truth (grey, dashed) likewise. Frames are subsampled to at most max_frames."""
    path = Path(path)
    truth = truth or {}
    F = max(len(v) for v in list(tracks.values()) + list(truth.values()))
    w, h = image_size
    frames = _frames_to_draw(F, max_frames)
    fig, (cam_ax, top_ax) = plt.subplots(1, 2, figsize=(9.6, 3.6), dpi=72,
                                         gridspec_kw=dict(width_ratios=[w / h * 1.0, 1.0]))
    cam_ax.set(xlim=(0, w), ylim=(h, 0), aspect="equal", xticks=[], yticks=[], title="camera")
    cam_ax.set_facecolor("0.95")
    everything = np.concatenate([v.reshape(-1, 3) for v in list(tracks.values()) + list(truth.values())])
    finite = everything[np.isfinite(everything).all(-1)]
    x_max = max(2.0, np.abs(finite[:, 0]).max() + 0.5) if len(finite) else 4.0
    z_max = max(3.0, finite[:, 2].max() + 0.5) if len(finite) else 8.0
    half_fov = np.arctan2(w / 2, K[0, 0])
    top_ax.plot([-z_max * np.tan(half_fov), 0, z_max * np.tan(half_fov)], [z_max, 0, z_max], color="0.7", lw=1)
    top_ax.plot([0], [0], marker=(3, 0, 0), color="k", ms=10)
    top_ax.set(xlim=(-x_max, x_max), ylim=(-0.3, z_max), aspect="equal", xlabel="x (m)", ylabel="z (m)",
               title="from above")
    artists = []  # (kind, id, is_truth, line objects)
    for is_truth, source in ((True, truth), (False, tracks)):
        for pid in source:
            colour = TRUTH_COLOUR if is_truth else id_colour(pid)
            style = dict(color=colour, lw=1.5 if is_truth else 2, ls="--" if is_truth else "-")
            cam_lines = [cam_ax.plot([], [], **style)[0] for _ in BONES]
            top_lines = [top_ax.plot([], [], **style)[0] for _ in BONES]
            label = None if is_truth else cam_ax.text(0, 0, pid, color=colour, fontsize=8, visible=False)
            artists.append((pid, is_truth, cam_lines, top_lines, label))
    clock = cam_ax.text(0.01, 0.99, "", transform=cam_ax.transAxes, va="top", fontsize=9)
    step = int(frames[1] - frames[0]) if len(frames) > 1 else 1
    writer = PillowWriter(fps=max(1.0, fps / step))
    with writer.saving(fig, str(path), dpi=72):
        for f in frames:
            for pid, is_truth, cam_lines, top_lines, label in artists:
                seq = (truth if is_truth else tracks)[pid]
                pose = seq[f] if f < len(seq) else np.full((17, 3), np.nan)
                ok = bool(np.isfinite(pose).all())
                uv = project(pose, K) if ok else None
                for line, top, (a, b) in zip(cam_lines, top_lines, BONES):
                    if ok:
                        line.set_data(uv[[a, b], 0], uv[[a, b], 1])
                        top.set_data(pose[[a, b], 0], pose[[a, b], 2])
                    else:
                        line.set_data([], [])
                        top.set_data([], [])
                if label is not None:
                    label.set_visible(ok)
                    if ok:
                        label.set_position((uv[10, 0], uv[10, 1] - 12))
            clock.set_text(f"t = {f / fps:5.1f} s")
            writer.grab_frame()
    plt.close(fig)
    return path


def latency_histogram(path, latencies_s: np.ndarray, title: str = "") -> Path:
    """Histogram of latencies in ms with the median and the 99th percentile marked."""
    path = Path(path)
    ms = 1000 * np.asarray(latencies_s, float)
    ms = ms[np.isfinite(ms)]
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=80)
    if len(ms):
        ax.hist(ms, bins=min(60, max(10, len(ms) // 10)), color="tab:blue", alpha=0.8)
        for q, style in ((50, "-"), (99, "--")):
            v = np.percentile(ms, q)
            ax.axvline(v, color="k", ls=style, lw=1)
            ax.text(v, ax.get_ylim()[1] * 0.95, f" p{q} {v:.1f} ms", va="top", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no latencies measured", transform=ax.transAxes, ha="center")
    ax.set(xlabel="latency (ms)", ylabel="messages", title=title or f"latency ({len(ms)} messages)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
