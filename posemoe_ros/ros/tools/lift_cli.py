"""`posemoe-lift`: lift a recording offline, with the node's pipeline (docs/offline.md).

input.mcap (a ROS 2 bag of Skeleton2DArray + CameraInfo), input.json (COCO-style keypoints) or
input.npz -> OUT/<name>_3d.npz, OUT/<name>_3d.json, OUT/<name>_3d.mcap (skeletons, markers,
TF: replays into RViz) and OUT/<name>.gif. The ROS message packages are imported only for
MCAP input or output, so keypoint files lift on a machine without ROS too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from posemoe_ros.pipeline.lifter import Lifter, LifterConfig, ModelLoadError
from posemoe_ros.tools.offline import (KeypointSequence, LiftResult, OfflineError, camera_from_values, lift_frames,
                                 read_keypoints, write_json, write_npz)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posemoe-lift", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="a ROS 2 bag (.mcap), COCO-style keypoint JSON (.json) or .npz")
    p.add_argument("--out", default=".", help="output folder, created (default: .)")
    p.add_argument("--weights", default=None, help="PoseMoE safetensors weights (default: the shipped model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--lookahead", type=int, default=0, help="frames of delay traded for accuracy, as the node's (default: 0)")
    p.add_argument("--body-height", type=float, default=LifterConfig.body_height,
                   help="stature (m) the skeletons are scaled to, which sets the monocular root depth; 0 = the "
                        f"model's own size (default: {LifterConfig.body_height}, as the node's)")
    p.add_argument("--threads", type=int, default=0, help="CPU inference threads (default: 0, the backend's default)")
    cam = p.add_argument_group("intrinsics (replace the input's CameraInfo / camera)")
    cam.add_argument("--fx", type=float, help="focal length x, pixels")
    cam.add_argument("--fy", type=float, help="focal length y, pixels (default fx)")
    cam.add_argument("--cx", type=float, help="principal point x (default the image centre)")
    cam.add_argument("--cy", type=float, help="principal point y (default the image centre)")
    cam.add_argument("--width", type=int, help="image width, pixels (default: the input's)")
    cam.add_argument("--height", type=int, help="image height, pixels (default: the input's)")
    files = p.add_argument_group("keypoint files (.json, .npz)")
    files.add_argument("--layout", help="coco17, h36m17, mediapipe33, body25 or coco18 (default: the file's "
                       "'layout', else by keypoint count: 17 coco17, 18 coco18, 25 body25, 33 mediapipe33)")
    files.add_argument("--fps", type=float, help="frame rate (default: the file's 'fps', else 30)")
    bag = p.add_argument_group("bags (.mcap)")
    bag.add_argument("--keypoints-topic", default="/keypoints_2d",
                     help="Skeleton2DArray topic (default: %(default)s)")
    bag.add_argument("--camera-info-topic", default="/camera_info", help="CameraInfo topic (default: %(default)s)")
    out = p.add_argument_group("outputs")
    out.add_argument("--no-render", action="store_true", help="skip the GIF")
    out.add_argument("--no-mcap", action="store_true", help="skip the output bag")
    out.add_argument("--max-frames", type=int, default=300, help="most frames in the GIF (default: 300)")
    out.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (OfflineError, ModelLoadError) as exc:
        print(f"posemoe-lift: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _read(args) -> KeypointSequence:
    path = Path(args.input)
    if path.suffix.lower() != ".mcap":
        return read_keypoints(path, args.layout, args.fps)
    if not path.is_file():
        raise OfflineError(f"input not found: {path}")
    from posemoe_ros.ros.tools.offline_bag import read_bag

    return read_bag(path, args.keypoints_topic, args.camera_info_topic, need_camera_info=args.fx is None)


def _camera(args, seq: KeypointSequence):
    """The command line's intrinsics replace the input's; without either, a clear error."""
    if args.fx is not None:
        for f in seq.frames:
            f.camera = None
        return camera_from_values(args.fx, args.fy, args.cx, args.cy, seq.image_size)
    if seq.camera is None:
        raise OfflineError(f"{args.input} gives no intrinsics (CameraInfo in a bag, 'camera' in JSON, 'K' in npz); "
                           "give --fx (and --fy, --cx, --cy)")
    return seq.camera


def run(args) -> LiftResult:
    seq = _read(args)
    if args.width and args.height:
        seq.image_size = (args.width, args.height)
    camera = _camera(args, seq)
    try:
        lifter = Lifter.from_weights(args.weights, LifterConfig(lookahead=args.lookahead, device=args.device,
                                                                   body_height=args.body_height,
                                                                   num_threads=args.threads))
    except ValueError as exc:  # lookahead beyond the window, CUDA absent, body height out of range
        raise OfflineError(str(exc)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / Path(args.input).stem
    bag_writer = None if args.no_mcap else _bag_writer(f"{stem}_3d.mcap", seq.frame_id, args.quiet)
    start = time.perf_counter()
    try:
        result = lift_frames(seq.frames, lifter, camera, on_frame=bag_writer, progress=not args.quiet,
                             total=len(seq.frames), skipped=seq.skipped)
    finally:
        if bag_writer is not None:
            bag_writer.close()
    seconds = time.perf_counter() - start
    size = seq.image_size or (int(round(2 * camera[0][0, 2] + 1)), int(round(2 * camera[0][1, 2] + 1)))
    write_npz(f"{stem}_3d.npz", result, camera, size, seq.fps, seq.frame_id)
    write_json(f"{stem}_3d.json", result, camera, size, seq.fps, seq.frame_id)
    written = [f"{stem}_3d.npz", f"{stem}_3d.json"] + ([f"{stem}_3d.mcap"] if bag_writer else [])
    if not args.no_render and _render(f"{stem}.gif", result, camera[0], size, seq.fps, args):
        written.append(f"{stem}.gif")
    if not args.quiet:
        _summary(result, seconds, written)
    return result


def _bag_writer(path: str, frame_id: str, quiet: bool):
    try:
        from posemoe_ros.ros.tools.offline_bag import SkeletonBagWriter
    except ImportError as exc:  # a ROS-free install: keypoint files still lift
        if not quiet:
            print(f"posemoe-lift: no MCAP output, the ROS 2 message packages are missing ({exc})", file=sys.stderr)
        return None
    return SkeletonBagWriter(path, frame_id)


def _render(path: str, result: LiftResult, K: np.ndarray, size, fps: float, args) -> bool:
    if not result.ids:
        print("posemoe-lift: no GIF, nobody was lifted", file=sys.stderr)
        return False
    try:
        from posemoe_ros.tools.render import scene_gif
    except ImportError as exc:
        print(f"posemoe-lift: no GIF, the renderer is unavailable ({exc})", file=sys.stderr)
        return False
    scene_gif(path, result.tracks(), K, size, fps, max_frames=args.max_frames)
    return True


def _summary(result: LiftResult, seconds: float, written: list[str]):
    frames = len(result.stamps_ns)
    lifted = int(np.isfinite(result.root[..., 0]).sum())
    print(f"lifted {lifted} person-frames of {len(result.ids)} people in {frames} frames, "
          f"{frames / max(seconds, 1e-9):.0f} frames/s")
    if result.warnings:
        print("ignored: " + ", ".join(f"{n} {reason}" for reason, n in sorted(result.warnings.items())))
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
