"""Load and churn: the real lift node for minutes at a fixed rate, with people coming and going.

    python bench/load.py                                   # 10 people, 60 Hz, 10 minutes, 10,000 ids
    python bench/load.py --minutes 0.33 --people 3 --rate 30 --ids 1000 --json out.json   # the suite's run

The node runs as its own process (`scripts/lift_node`, reliable inputs, CPU), so its resident
memory is its own. This process publishes, paced by the clock, one Skeleton2DArray with
`--people` people (h36m17, synthetic motions at 3-7 m, 1 px noise) and a CameraInfo per frame,
stamped with the wall clock; each person slot hands its id on to a new one so that `--ids`
distinct ids pass over the run (tracks must expire, or memory grows). Outputs are matched to
inputs by stamp from the raw bytes (no decoding on this side).

Reported: inputs sent, answered (an output with the input's stamp and all its people), missing
(of which the node's newest-input mailbox dropped `dropped_behind`); the node's resident set
(RSS) after `--warmup` seconds and at the end, the growth and its least-squares slope; the most
tracks the node held; rejections, internal errors and tracebacks in its log; its exit status.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.lift_node_peer import NS, LiftNodePeer, parameter_args, start_lift_node  # noqa: E402
from posemoe_ros.data.procedural import generate_motion  # noqa: E402
from posemoe_ros.geometry.camera import project  # noqa: E402
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray  # noqa: E402

FRAME = "camera_optical_frame"
W, H = 1280, 720
K = np.array([[900.0, 0, 639.5], [0, 900.0, 359.5], [0, 0, 1]])


def people_clips(people: int, rate: float, seconds: float = 10.0, seed: int = 0) -> list[np.ndarray]:
    """Per person slot, a looping clip of pixel keypoints (F,17,2): a motion at its own place."""
    kinds = ("turn", "wave", "reach", "sit")  # motions that stay in place, so a looping clip stays in view
    clips = []
    for s in range(people):
        world = generate_motion(kinds[s % len(kinds)], seconds=seconds, fps=rate, seed=seed + s)
        x = -2.4 + 4.8 * (s + 0.5) / people
        z = 3.0 + 4.0 * ((s * 0.618) % 1.0)
        cam = np.stack([-(world[..., 0] - world[:1, :1, 0]) + x, -(world[..., 1] - 1.2),
                        world[..., 2] - world[:1, :1, 2] + z], -1)
        clips.append(project(cam, K))
    return clips


def start_node(domain: int, log_path: Path, params: list[str]):
    return start_lift_node(domain, log_path, parameter_args(
        ["input_reliability:=reliable", "device:=cpu", "diagnostics_period:=1.0", *params]))


def keypoint_msg(stamp_ns: int, ids: list[str], uv: np.ndarray, rng) -> Skeleton2DArray:
    msg = Skeleton2DArray(width=W, height=H, layout="h36m17")
    msg.header.frame_id = FRAME
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)
    noisy = uv + rng.normal(0.0, 1.0, uv.shape)
    msg.skeletons = [Skeleton2D(id=i, keypoints=[Keypoint2D(x=float(x), y=float(y), confidence=0.9) for x, y in p])
                     for i, p in zip(ids, noisy)]
    return msg


def run(args) -> dict:
    seconds = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(60.0, 0.4 * seconds)
    frames = int(round(seconds * args.rate))
    lifetime = frames * args.people / args.ids  # frames an id lives; staggered over the slots
    clips = people_clips(args.people, args.rate)
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.0] * 5, k=K.flatten().tolist())
    info.header.frame_id = FRAME
    domain = args.domain if args.domain is not None else random.randint(201, 232)
    log = Path(args.log)
    proc = start_node(domain, log, args.param)
    node_ps = psutil.Process(proc.pid)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    bench = LiftNodePeer(context, "load_bench", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    rng = np.random.default_rng(0)
    result = {}
    try:
        deadline = time.monotonic() + 120
        while bench.pub_kp.get_subscription_count() == 0 or bench.pub_info.get_subscription_count() == 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"lift node did not subscribe; see {log}")
            time.sleep(0.1)
        time.sleep(0.5)
        sent: dict[int, int] = {}  # stamp -> people
        ids_seen: set[str] = set()
        rss: list[tuple[float, int]] = []
        late = 0
        tracked_max = 0
        t0 = time.perf_counter()
        next_rss = 0.0
        for f in range(frames):
            delay = t0 + f / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0 / args.rate:
                late += 1  # this side could not keep the pace
            # slot s hands its id on every `lifetime` frames, staggered so ids change one at a time
            ids = [f"p{int((f + s * lifetime / args.people) // lifetime)}_{s}" for s in range(args.people)]
            ids_seen.update(ids)
            uv = np.stack([clip[(f + 37 * s) % len(clip)] for s, clip in enumerate(clips)])
            stamp = time.time_ns()
            msg = keypoint_msg(stamp, ids, uv, rng)
            info.header.stamp = msg.header.stamp
            bench.pub_info.publish(info)
            bench.pub_kp.publish(msg)
            sent[stamp] = args.people
            elapsed = time.perf_counter() - t0
            if elapsed >= next_rss:
                rss.append((elapsed, node_ps.memory_info().rss))
                next_rss += 1.0
                if bench.diagnostics:
                    tracked_max = max(tracked_max, int(bench.last_diagnostics().get("people_tracked", 0)))
        wall = time.perf_counter() - t0
        drain = time.monotonic() + 10.0
        while time.monotonic() < drain and len(bench.outputs) < len(sent):
            time.sleep(0.1)
        time.sleep(1.5)  # one more diagnostics report
        rss.append((time.perf_counter() - t0, node_ps.memory_info().rss))
        diag = bench.last_diagnostics()
        tracked_max = max([tracked_max] + [int(d.get("people_tracked", 0)) for _, d in bench.diagnostics])
        answered = sum(1 for s, n in sent.items() if bench.outputs.get(s, (0, -1))[1] == n)
        times, values = np.array([t for t, _ in rss]), np.array([v for _, v in rss]) / 2**20
        after = times >= warmup
        rss_warm = float(values[after][0]) if after.any() else float("nan")
        slope = float(np.polyfit(times[after], values[after], 1)[0] * 60) if after.sum() >= 3 else float("nan")
        result = dict(
            people=args.people, rate_hz=args.rate, seconds=round(wall, 1), achieved_hz=round(frames / wall, 2),
            publisher_late_frames=late, inputs_sent=len(sent), answered=answered, missing=len(sent) - answered,
            dropped_behind=int(diag.get("dropped_behind", -1)), node_inputs=int(diag.get("inputs", -1)),
            rejected_total=int(diag.get("rejected_total", -1)),
            internal_errors=int(diag.get("rejected_internal_error", 0)), distinct_ids=len(ids_seen),
            id_lifetime_frames=round(lifetime, 1), tracks_max=tracked_max, warmup_s=warmup,
            rss_start_mib=round(float(values[0]), 1), rss_after_warmup_mib=round(rss_warm, 1),
            rss_end_mib=round(float(values[-1]), 1), rss_growth_mib=round(float(values[-1]) - rss_warm, 2),
            rss_slope_mib_per_min=round(slope, 3),
            latency_p50_ms=diag.get("latency_p50_ms"), latency_p99_ms=diag.get("latency_p99_ms"),
            device=diag.get("device", "?"))
    finally:
        bench.close()
        context.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            result["exit_status"] = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            result["exit_status"] = proc.wait()
    text = log.read_text(errors="replace")
    result["tracebacks"] = text.count("Traceback")
    result["error_lines"] = sum(line.startswith(("[ERROR]", "[FATAL]")) for line in text.splitlines())
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--rate", type=float, default=60.0, help="frames per second")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--ids", type=int, default=10_000, help="distinct person ids over the run")
    ap.add_argument("--warmup", type=float, default=None, help="s before the RSS baseline (default: min(60, 40%%))")
    ap.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: random in 201-232)")
    ap.add_argument("--param", action="append", default=[], help="extra node parameter name:=value (repeatable)")
    ap.add_argument("--log", default="/tmp/posemoe_load_node.log", help="the node's stdout and stderr")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    result = run(args)
    width = max(map(len, result))
    print("| figure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key:<{width}} | {value} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = (result.get("missing") == 0 and result.get("internal_errors") == 0 and result.get("tracebacks") == 0
          and result.get("exit_status") == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
