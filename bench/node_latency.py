"""End-to-end latency of the real lift node under load: keypoint publish -> 3D message arrival.

    python bench/node_latency.py                                  # 30/60 Hz x 1/5/10 people x both backends
    python bench/node_latency.py --rates 30 --people 5 --backends onnxruntime --duration 30

The node runs as its own process (`scripts/lift_node` with config/lift.yaml and `-p backend:=...`),
so its CPU use and resident memory are its own. This process plays the scenario of
posemoe_ros/tools/scenario.py (coco17 keypoints with the documented detector noise, a CameraInfo with
every frame) at a fixed rate, with a sensor-data (best-effort) publisher like a detector's. Each
keypoint message is stamped with the wall clock just before it is published; the node's output
carries the same stamp (lookahead 0), so latency = wall clock when the 3D message arrives here -
its stamp. The arrival is taken in a raw (undeserialised) subscription to keep this side's cost
out of the number.

"N people" means exactly N in every frame: the scenario's `late` person (who enters and leaves
mid-run) is left out and one more always-visible person is added instead.
Per configuration: `--warmup` seconds unmeasured (model warm-up, windows filling), then
`--duration` seconds measured: latency p50 / p99 / max over the answered inputs; inputs dropped =
published in the window and never answered (of which the node's mailbox dropped `dropped_behind`,
the rest were lost before the node took them); CPU = the node process's CPU time / wall time
(100 % = one core); RSS = the node's largest resident set size seen.
"""
from __future__ import annotations

import argparse
import datetime
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.lift_node_peer import LiftNodePeer, parameter_args, start_lift_node  # noqa: E402
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray  # noqa: E402
from posemoe_ros.tools.scenario import Scenario, ScenarioConfig  # noqa: E402

FRAME = "camera_optical_frame"


def scenario_messages(people: int, rate: float, seconds: float):
    """Prebuilt (keypoints, camera_info) messages with exactly `people` people per frame."""
    n = people if people < 3 else people + 1  # + 1 replaces `late`, who is not always in view
    sc = Scenario(ScenarioConfig(num_people=n, duration=seconds, fps=rate, seed=0))
    info = CameraInfo(width=sc.width, height=sc.height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=sc.K.flatten().tolist())
    info.header.frame_id = FRAME
    msgs, counts = [], []
    for i in range(sc.num_frames):
        f = sc.frame(i)
        keep = [n for n, i_d in enumerate(f.ids) if i_d != "late"][:people]
        msg = Skeleton2DArray(width=sc.width, height=sc.height, layout=sc.layout)
        msg.header.frame_id = FRAME
        msg.skeletons = [Skeleton2D(id=f.ids[n], keypoints=[Keypoint2D(x=float(u), y=float(v), confidence=float(c))
                                                            for (u, v), c in zip(f.uv[n], f.conf[n])]) for n in keep]
        msgs.append(msg)
        counts.append(len(keep))
    return msgs, info, counts


def start_node(backend: str, domain: int, log_path: Path, extra: list[str]):
    return start_lift_node(domain, log_path, ["--params-file", str(REPO / "config" / "lift.yaml"), *parameter_args(
        [f"backend:={backend}", "diagnostics_period:=0.5", *extra])])


def run_config(backend: str, rate: float, people: int, args, domain: int) -> dict:
    total = args.warmup + args.duration
    msgs, info, counts = scenario_messages(people, rate, total)
    log = Path(args.out) / f"node_{backend}_{int(rate)}hz_{people}p.log"
    proc = start_node(backend, domain, log, args.param)
    ps = psutil.Process(proc.pid)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = LiftNodePeer(context, "node_latency_bench", qos_profile_sensor_data)
    try:
        deadline = time.monotonic() + 120
        while probe.pub_kp.get_subscription_count() == 0:  # the node is up and subscribed
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"lift node did not subscribe; see {log}")
            time.sleep(0.1)
        time.sleep(0.5)
        first = int(args.warmup * rate)
        stamps = np.zeros(len(msgs), np.int64)
        rss_max, cpu0, wall0, own0 = 0, None, None, None
        t0 = time.perf_counter()
        for i, msg in enumerate(msgs):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i == first:  # the measured window starts
                cpu0, wall0 = ps.cpu_times(), time.perf_counter()
                own0 = psutil.Process().cpu_times()
                diag_start = probe.last_diagnostics()
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
            info.header.stamp = msg.header.stamp
            probe.pub_info.publish(info)
            probe.pub_kp.publish(msg)
            stamps[i] = now
            if i % int(rate / 2) == 0:
                rss_max = max(rss_max, ps.memory_info().rss)
        cpu1, wall1, own1 = ps.cpu_times(), time.perf_counter(), psutil.Process().cpu_times()
        rss_max = max(rss_max, ps.memory_info().rss)
        time.sleep(1.5)  # stragglers and one more diagnostics report
        diag_end = probe.last_diagnostics()
        window = stamps[first:]
        lat = np.array([probe.outputs[s][0] - s for s in window if s in probe.outputs]) / 1e6  # ms
        count = lambda d, k: int(d.get(k, 0))  # noqa: E731
        node_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)
        own_cpu = (own1.user + own1.system - own0.user - own0.system) / (wall1 - wall0)
        return dict(
            backend=backend, rate_hz=rate, people=people, mean_people=float(np.mean(counts[first:])),
            sent=len(window), answered=len(lat), dropped=len(window) - len(lat),
            dropped_behind=count(diag_end, "dropped_behind") - count(diag_start, "dropped_behind"),
            node_inputs=count(diag_end, "inputs") - count(diag_start, "inputs"),
            rejected=count(diag_end, "rejected_total") - count(diag_start, "rejected_total"),
            p50_ms=float(np.percentile(lat, 50)) if len(lat) else None,
            p99_ms=float(np.percentile(lat, 99)) if len(lat) else None,
            max_ms=float(lat.max()) if len(lat) else None,
            node_cpu_percent=100 * node_cpu, bench_cpu_percent=100 * own_cpu, node_rss_mib=rss_max / 2**20,
            device=diag_end.get("device", "?"),
            load1=round(os.getloadavg()[0], 2),
            node_internal_p50_ms=float(diag_end.get("latency_p50_ms", "nan")),  # callback -> publish, last 1000
            node_internal_p99_ms=float(diag_end.get("latency_p99_ms", "nan")))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        probe.close()
        context.try_shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="30,60")
    ap.add_argument("--people", default="1,5,10")
    ap.add_argument("--backends", default="onnxruntime,torch")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per configuration")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each measurement")
    ap.add_argument("--domain", type=int, default=215, help="ROS_DOMAIN_ID (apart from the tests' 1-200)")
    ap.add_argument("--param", action="append", default=[], help="extra node parameter name:=value (repeatable)")
    ap.add_argument("--out", default=str(REPO / "out" / "bench"))
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    header = ["backend", "rate (Hz)", "people", "p50 ms", "p99 ms", "max ms", "dropped / sent", "of which mailbox",
              "node CPU %", "node RSS MiB", "bench CPU %", "load"]
    print("| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|", flush=True)
    rows = []
    meta = dict(date=datetime.date.today().isoformat(), cores=os.cpu_count(), argv=sys.argv[1:])
    for backend in split(args.backends):
        for rate in [float(r) for r in split(args.rates)]:
            for people in [int(p) for p in split(args.people)]:
                # a hang (DDS, shutdown) ends the bench with every thread's stack instead of silently
                faulthandler.dump_traceback_later(args.warmup + args.duration + 180, exit=True)
                r = run_config(backend, rate, people, args, args.domain)
                faulthandler.cancel_dump_traceback_later()
                rows.append(r)
                (Path(args.out) / "node_latency.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
                fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
                print(f"| {backend} | {rate:g} | {people} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                      f"{fmt(r['max_ms'])} | {r['dropped']} / {r['sent']} | {r['dropped_behind']} | "
                      f"{r['node_cpu_percent']:.0f} | {r['node_rss_mib']:.0f} | {r['bench_cpu_percent']:.0f} | "
                      f"{r['load1']} |",
                      flush=True)
    meta["load_average_at_end"] = os.getloadavg()
    print(json.dumps(meta))
    (Path(args.out) / "node_latency.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))


if __name__ == "__main__":
    main()
