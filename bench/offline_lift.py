"""Throughput of `posemoe-lift` on a long generated recording (docs/offline.md).

    python bench/offline_lift.py [--people 3] [--frames 3000] [--input json|mcap] [--threads 0] [--no-mcap]

Writes a COCO-style keypoint JSON (or a ROS 2 bag) of procedural people walking, waving and
turning side by side in front of a 640x480 camera, then runs posemoe-lift on it (no GIF) and
prints the wall time of each stage and the frames per second of the whole command.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posemoe_ros.data.procedural import generate_motion  # noqa: E402
from posemoe_ros.geometry.camera import project  # noqa: E402
from posemoe_ros.ros.tools import lift_cli  # noqa: E402
from posemoe_ros.skeleton import JOINT_INDEX as J  # noqa: E402

K = np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]])
FPS = 30
KINDS = ("walk", "wave", "turn", "reach", "sit")


def coco17(cam: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (F,17,3) of H36M joints: eyes and ears beside the nose and head."""
    left = cam[:, J["l_shoulder"]] - cam[:, J["r_shoulder"]]
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    face = 0.5 * (cam[:, J["neck_nose"]] + cam[:, J["head"]])
    points = [cam[:, J["neck_nose"]], face + 0.03 * left, face - 0.03 * left,
              face + 0.075 * left, face - 0.075 * left]
    points += [cam[:, J[f"{s}_{part}"]] for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in "lr"]
    return np.stack(points, 1)


def people_uv(people: int, frames: int) -> np.ndarray:
    """(F,P,17,2) pixels; each person in place (no walking off-screen), 1.3 m apart, 5 m away."""
    out = []
    for p in range(people):
        world = generate_motion(KINDS[p % len(KINDS)], seconds=frames / FPS, fps=FPS, seed=p)[:frames]
        world[..., [0, 2]] -= world[:, :1, [0, 2]]  # cancel the walk's travel: stay in view
        x = (p - (people - 1) / 2) * 1.3
        cam = np.stack([-world[..., 0] + x, -(world[..., 1] - 1.2), world[..., 2] + 5.0], -1)
        out.append(project(coco17(cam), K))
    return np.stack(out, 1)


def write_json(path: Path, uv: np.ndarray):
    records = [{"image_id": f, "track_id": p, "keypoints": np.c_[uv[f, p], np.full(17, 0.9)].ravel().round(2).tolist()}
               for f in range(len(uv)) for p in range(uv.shape[1])]
    path.write_text(json.dumps({"fps": FPS, "width": 640, "height": 480, "camera": {"K": K.tolist()},
                                "annotations": records}))


def write_bag(path: Path, uv: np.ndarray):
    from sensor_msgs.msg import CameraInfo

    from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray
    from posemoe_ros.ros.tools.mcap_io import McapWriter

    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5, k=K.ravel().tolist())
    with McapWriter(path) as writer:
        writer.write("/camera_info", info, 0)
        for f in range(len(uv)):
            stamp = f * 1_000_000_000 // FPS
            msg = Skeleton2DArray(width=640, height=480, layout="coco17", skeletons=[
                Skeleton2D(id=str(p), keypoints=[Keypoint2D(x=float(u), y=float(v), confidence=0.9)
                                                 for u, v in uv[f, p]]) for p in range(uv.shape[1])])
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.header.frame_id = "camera_optical_frame"
            writer.write("/keypoints_2d", msg, stamp)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--input", choices=("json", "mcap"), default="json")
    parser.add_argument("--threads", type=int, default=0, help="posemoe-lift --threads (0 = backend default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-mcap", action="store_true", help="posemoe-lift --no-mcap (no output bag)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"long.{args.input}"
        start = time.perf_counter()
        (write_json if args.input == "json" else write_bag)(path, people_uv(args.people, args.frames))
        print(f"generated {args.people} people x {args.frames} frames ({path.stat().st_size / 1e6:.1f} MB "
              f"{args.input}) in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        status = lift_cli.main([str(path), "--out", tmp, "--no-render", "--device", args.device,
                                "--threads", str(args.threads)] + ["--no-mcap"] * args.no_mcap)
        total = time.perf_counter() - start
        print(f"posemoe-lift: {total:.1f} s for {args.frames} frames = {args.frames / total:.0f} frames/s "
              f"({args.frames * args.people / total:.0f} person-frames/s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
