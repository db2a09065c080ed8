"""posemoe-demo: the whole system working and measured, with no camera and no ROS install.

Starts the real lift node (its own process, config/lift.yaml) and, in this process, the scenario
player (a virtual camera watching procedural people, detector noise included) and a recorder that
writes every topic to an MCAP bag. After --duration seconds it stops the node, matches the node's
skeletons to the truth by stamp and id, prints a summary (MPJPE, P-MPJPE, root error, latency,
drops) and writes summary.json and pictures to --out. On a ROS 2 machine: demo.launch.py.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from posemoe_ros.msg import Skeleton2DArray, Skeleton3DArray
from posemoe_ros.ros.conversions import stamp_ns
from posemoe_ros.ros.tools.mcap_io import McapWriter
from posemoe_ros.ros.tools.scenario_player import ScenarioPlayer

REPO = Path(__file__).resolve().parents[3]
NODE_NAME = "posemoe_lift"
# Every topic of the demo, recorded as `ros2 bag record -a` would.
TOPICS = {"keypoints_2d": Skeleton2DArray, "camera_info": CameraInfo, "skeletons_3d": Skeleton3DArray,
          "skeletons_3d_truth": Skeleton3DArray, "skeleton_markers": MarkerArray, "/tf": TFMessage,
          "/diagnostics": DiagnosticArray}
# The player publishes reliably; asking the node for reliable inputs means no input is lost to QoS.
NODE_OVERRIDES = {"input_reliability": "reliable"}


class DemoError(RuntimeError):
    """The demo could not run (the node did not start, nothing was lifted); one line for the user."""


def default_config() -> Path:
    """config/lift.yaml of the source tree, else of the installed package."""
    source = REPO / "config" / "lift.yaml"
    if source.is_file():
        return source
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory("posemoe_ros")) / "config" / "lift.yaml"


# ---- the lift node's process ---------------------------------------------------------------------
def _die_with_parent():  # runs in the child: the kernel sends SIGTERM if the demo dies, even by SIGKILL
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LiftNodeProcess:
    """The real lift node as a child process; stop() ends it with SIGINT (escalating if it hangs)."""

    def __init__(self, config: Path, overrides: dict[str, str], env: dict[str, str], log_path: Path):
        params = [a for name, value in overrides.items() for a in ("-p", f"{name}:={value}")]
        self.command = [sys.executable, "-m", "posemoe_ros.ros.lift_node", "--ros-args", "--params-file",
                        str(config), *params]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True,  # a terminal's Ctrl-C is ours to forward
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        return self.process.wait()


# ---- recording -----------------------------------------------------------------------------------
class Recorder(Node):
    """Subscribes to every demo topic, writes each message to the bag as it arrives and keeps what
    the evaluation needs (the node's skeletons with their arrival times, its diagnostics)."""

    def __init__(self, writer: McapWriter, **kwargs):
        super().__init__("demo_recorder", **kwargs)
        self.writer = writer
        self.counts: Counter[str] = Counter()
        self.outputs: list[tuple[float, Skeleton3DArray]] = []  # (time.perf_counter() at arrival, message)
        self.diagnostics: list[DiagnosticArray] = []
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = {topic: self.create_subscription(type_, topic, partial(self._on_message, topic), qos)
                     for topic, type_ in TOPICS.items()}

    def _on_message(self, topic: str, msg):
        arrival = time.perf_counter()
        self.writer.write(topic, msg, time.time_ns())
        self.counts[topic] += 1
        if topic == "skeletons_3d":
            self.outputs.append((arrival, msg))
        elif topic == "/diagnostics" and any(s.hardware_id.endswith(NODE_NAME) for s in msg.status):
            self.diagnostics.append(msg)

    def node_ready(self) -> bool:
        """The lift node subscribes to keypoints_2d and we hear its skeletons_3d publisher."""
        subscribed = any(info.node_name == NODE_NAME
                         for info in self.get_subscriptions_info_by_topic("/keypoints_2d"))
        return subscribed and self.subs["skeletons_3d"].get_publisher_count() > 0


def diagnostic_values(msg: DiagnosticArray | None) -> dict[str, str]:
    if msg is None:
        return {}
    status = next(s for s in msg.status if s.hardware_id.endswith(NODE_NAME))
    return {kv.key: kv.value for kv in status.values}


# ---- evaluation ----------------------------------------------------------------------------------
def _xyz(points) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64)


def match_outputs(player: ScenarioPlayer, outputs: list[tuple[float, Skeleton3DArray]]):
    """-> rows (frame index, id, pred (17,3), pred root (3,), truth (17,3)), latencies (s) per
    output message, and the count of skeletons that match no true person."""
    rows, latencies, unmatched = [], [], 0
    for arrival, msg in outputs:
        stamp = stamp_ns(msg.header.stamp)
        i = player.frame_index(stamp)
        if i is None:
            unmatched += len(msg.skeletons)
            continue
        latencies.append(arrival - player.publish_times[stamp])
        frame = player.scenario.frame(i)
        for skeleton in msg.skeletons:
            if skeleton.id not in frame.ids:
                unmatched += 1
                continue
            truth = frame.truth[frame.ids.index(skeleton.id)]
            rows.append((i, skeleton.id, _xyz(skeleton.positions), _xyz([skeleton.root_position])[0], truth))
    return rows, np.array(latencies), unmatched


def pose_errors(rows) -> dict[str, float]:
    """MPJPE (root-relative) and P-MPJPE in metres, root error in metres and as a fraction of the
    true distance to the camera; means over every person-frame of `rows`."""
    from posemoe_ros.metrics import mpjpe, p_mpjpe  # torch: imported only when there is something to score

    pred = np.stack([r[2] for r in rows])
    truth = np.stack([r[4] for r in rows])
    root = np.stack([r[3] for r in rows])
    root_error = np.linalg.norm(root - truth[:, 0], axis=-1)
    return {"frames": len(rows),
            "mpjpe_m": mpjpe(pred - pred[:, :1], truth - truth[:, :1]),
            "p_mpjpe_m": p_mpjpe(pred, truth),
            "root_error_m": float(root_error.mean()),
            "root_error_rel": float((root_error / np.linalg.norm(truth[:, 0], axis=-1)).mean())}


def summarize(player: ScenarioPlayer, recorder: Recorder) -> tuple[dict, list, np.ndarray]:
    """The run's numbers (see format_summary), the matched rows and the latencies."""
    rows, latencies, unmatched = match_outputs(player, recorder.outputs)
    if not rows:
        raise DemoError("the lift node published no skeleton that matches a person; see lift_node.log")
    scenario = player.scenario
    published = len(player.stamps)
    lifted_stamps = {stamp_ns(m.header.stamp) for _, m in recorder.outputs}
    in_view = int(sum(len(scenario.frame(i).ids) for i in range(published)))
    diag = diagnostic_values(recorder.diagnostics[-1] if recorder.diagnostics else None)
    rejected = {k[len("rejected_"):]: int(v) for k, v in diag.items()
                if k.startswith("rejected_") and k != "rejected_total"}
    without_output = sum(1 for s in player.stamps if s not in lifted_stamps)
    summary = {
        "duration_s": scenario.config.duration, "rate_hz": scenario.config.fps, "seed": scenario.config.seed,
        "people_in_scene": list(scenario.ids),
        "frames_published": published,
        "frames_lifted": len(lifted_stamps & set(player.stamps)),
        "people_lifted": sorted({r[1] for r in rows}),
        "person_frames_in_view": in_view,
        "person_frames_lifted": len(rows),
        "skeletons_unmatched": unmatched,
        **pose_errors(rows),
        "latency_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_p99_s": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "inputs_dropped": without_output + sum(rejected.values()),
        "inputs_without_output": without_output,
        "node_rejected": rejected,
        "node_dropped_behind": int(diag.get("dropped_behind", 0)),
        "node_latency_p50_ms": float(diag["latency_p50_ms"]) if "latency_p50_ms" in diag else None,
        "per_person": {pid: pose_errors([r for r in rows if r[1] == pid]) for pid in sorted({r[1] for r in rows})},
    }
    summary.pop("frames")
    return summary, rows, latencies


def format_summary(s: dict) -> str:
    mm = lambda v: f"{1000 * v:.0f} mm"  # noqa: E731
    ms = lambda v: "n/a" if v is None else f"{1000 * v:.1f} ms"  # noqa: E731
    lines = [
        f"posemoe demo: {s['duration_s']:g} s at {s['rate_hz']:g} Hz, people {', '.join(s['people_in_scene'])}",
        f"  lifted          {len(s['people_lifted'])} people, {s['frames_lifted']}/{s['frames_published']} frames, "
        f"{s['person_frames_lifted']}/{s['person_frames_in_view']} person-frames",
        f"  MPJPE           {mm(s['mpjpe_m'])} (root-relative)   P-MPJPE {mm(s['p_mpjpe_m'])}",
        f"  root position   {s['root_error_m']:.2f} m mean error, {100 * s['root_error_rel']:.1f} % of the distance",
        f"  latency         p50 {ms(s['latency_p50_s'])}   p99 {ms(s['latency_p99_s'])}   "
        "(keypoints published -> skeletons_3d received)",
        f"  inputs dropped  {s['inputs_dropped']} ({s['inputs_without_output']} without output, of which the node "
        f"skipped {s['node_dropped_behind']} to stay current; rejected by the node: {s['node_rejected'] or 'none'})",
    ]
    for pid, e in s["per_person"].items():
        lines.append(f"    {pid:<10} {e['frames']:5d} frames  MPJPE {mm(e['mpjpe_m'])}  P-MPJPE {mm(e['p_mpjpe_m'])}  "
                     f"root {100 * e['root_error_rel']:.1f} %")
    return "\n".join(lines)


# ---- pictures ------------------------------------------------------------------------------------
def write_pictures(out: Path, player: ScenarioPlayer, rows, latencies: np.ndarray, gif_frames: int,
                   panels: int = 8) -> list[Path]:
    from posemoe_ros.tools import render

    scenario = player.scenario
    F = len(player.stamps)
    tracks: dict[str, np.ndarray] = {}
    for i, pid, pred, _, _ in rows:
        tracks.setdefault(pid, np.full((F, 17, 3), np.nan))[i] = pred
    truth = {pid: np.where(scenario.present[k, :F, None, None], scenario.truth[k, :F], np.nan)
             for k, pid in enumerate(scenario.ids)}
    # the sheet: evenly spaced moments, a different person at each where several are in view
    by_frame: dict[int, list] = {}
    for r in rows:
        by_frame.setdefault(r[0], []).append(r)
    frames = sorted(by_frame)
    picks = [by_frame[frames[int(k)]] for k in np.linspace(len(frames) * 0.1, len(frames) - 1, panels)]
    picks = [p[k % len(p)] for k, p in enumerate(picks)]
    error_mm = lambda p, t: 1000 * np.linalg.norm((p - p[0]) - (t - t[0]), axis=-1).mean()  # noqa: E731
    titles = [f"{pid} t={i / scenario.config.fps:.1f} s\nerror {error_mm(p, t):.0f} mm" for i, pid, p, _, t in picks]
    return [
        render.skeleton_sheet(out / "skeletons.png", np.stack([p[2] for p in picks]), np.stack([p[4] for p in picks]),
                              titles),
        render.scene_gif(out / "scene.gif", tracks, scenario.K, (scenario.width, scenario.height),
                         scenario.config.fps, truth, max_frames=gif_frames),
        render.latency_histogram(out / "latency.png", latencies,
                                 "keypoints published -> skeletons_3d received"),
    ]


# ---- the run -------------------------------------------------------------------------------------
def _spin_until(executor, predicate, timeout: float, check=None) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
        if check:
            check()
    return predicate()


def _drained(recorder: Recorder, player: ScenarioPlayer) -> bool:
    """The node has reported every input, and each output it counted has arrived."""
    last = diagnostic_values(recorder.diagnostics[-1]) if recorder.diagnostics else {}
    return int(last.get("inputs", -1)) >= len(player.stamps) and len(recorder.outputs) >= int(last.get("outputs", 0))


def run_demo(duration: float = 20.0, people: int = 3, seed: int = 0, rate: float = 30.0, out: Path = Path("out/demo"),
             domain_id: int | None = None, config: Path | None = None, node_params: dict[str, str] | None = None,
             gif_frames: int = 150, ready_timeout: float = 120.0, log=print) -> dict:
    """Run the demo; returns the summary (also written to out/summary.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.randint(1, 232))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the demo's traffic stays here
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    overrides = {**NODE_OVERRIDES, **(node_params or {})}
    config = Path(config) if config else default_config()
    bag = out / "demo.mcap"
    log(f"posemoe demo: ROS_DOMAIN_ID={domain_id}, node {config} {overrides}, output {out}/")

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = executor = recorder = player = None
    writer = McapWriter(bag)
    try:
        node = LiftNodeProcess(config, overrides, env, out / "lift_node.log")
        log(f"lift node started (pid {node.pid}), waiting for it to load its model")

        def check():
            if not node.alive():
                raise DemoError(f"the lift node exited (code {node.process.returncode}):\n{node.log_tail()}")

        executor = SingleThreadedExecutor(context=context)
        recorder = Recorder(writer, context=context)
        executor.add_node(recorder)
        if not _spin_until(executor, recorder.node_ready, ready_timeout, check):
            raise DemoError(f"the lift node did not come up within {ready_timeout:g} s:\n{node.log_tail()}")
        player = ScenarioPlayer(context=context, parameter_overrides=[
            Parameter("duration", value=float(duration)), Parameter("num_people", value=int(people)),
            Parameter("seed", value=int(seed)), Parameter("rate", value=float(rate))])
        executor.add_node(player)
        log(f"playing {duration:g} s: {', '.join(player.scenario.ids)}")
        _spin_until(executor, lambda: player.done, duration + 60.0, check)
        _spin_until(executor, partial(_drained, recorder, player), 10.0, check)
    finally:
        exit_code = node.stop() if node is not None else None
        writer.close()
        if executor is not None:
            executor.shutdown()
        for n in (player, recorder):
            if n is not None:
                n.destroy_node()
        context.try_shutdown()
    if exit_code != 0:
        log(f"warning: the lift node exited with code {exit_code}; see {node.log_path}")

    summary, rows, latencies = summarize(player, recorder)
    summary.update(domain_id=domain_id, lift_node_pid=node.pid, lift_node_exit_code=exit_code,
                   lift_node_command=node.command, mcap=str(bag), mcap_messages=dict(recorder.counts))
    pictures = write_pictures(out, player, rows, latencies, gif_frames)
    summary["pictures"] = [str(p) for p in pictures]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(format_summary(summary))
    log(f"  wrote {bag} ({sum(recorder.counts.values())} messages on {len(recorder.counts)} topics), "
        f"{out / 'summary.json'}, " + ", ".join(p.name for p in pictures))
    return summary


def _parse_param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:=VALUE, got '{text}'")
    return name, value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="posemoe-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of scenario (default 20)")
    ap.add_argument("--people", type=int, default=3, help="people in the scene (default 3: walker, waver, late)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=30.0, help="camera frame rate, Hz")
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID or random)")
    ap.add_argument("--config", type=Path, default=None, help="lift node parameter file (default config/lift.yaml)")
    ap.add_argument("-p", "--node-param", type=_parse_param, action="append", default=[], metavar="NAME:=VALUE",
                    help="override one lift node parameter (repeatable)")
    ap.add_argument("--gif-frames", type=int, default=150, help="most frames in scene.gif")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up in run_demo's finally
    try:
        run_demo(args.duration, args.people, args.seed, args.rate, args.out, args.domain_id, args.config,
                 dict(args.node_param), args.gif_frames)
    except DemoError as exc:
        print(f"posemoe-demo: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        print("posemoe-demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
