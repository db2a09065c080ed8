"""What the node benchmarks share: the real lift node as its own process, and the peer node that
feeds it and watches its outputs (raw, so this side's decoding cost stays out of the figures)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from posemoe_ros.msg import Skeleton2DArray, Skeleton3DArray  # noqa: E402

NS = 1_000_000_000


def start_lift_node(domain: int, log_path: Path, ros_args: list[str]) -> subprocess.Popen:
    """scripts/lift_node from this checkout, on `domain`, its output in log_path."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONPATH=str(REPO), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("AMENT_PREFIX_PATH", str(REPO / ".venv"))
    cmd = [sys.executable, str(REPO / "scripts" / "lift_node"), "--ros-args", *ros_args]
    return subprocess.Popen(cmd, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def parameter_args(params: list[str]) -> list[str]:
    """["a:=1", "b:=2"] -> ["-p", "a:=1", "-p", "b:=2"]."""
    return [arg for p in params for arg in ("-p", p)]


class LiftNodePeer:
    """Publishers of keypoints and CameraInfo; per output stamp its arrival time and people count;
    the node's diagnostics as (monotonic time, key -> value). Spins on its own thread."""

    def __init__(self, context, name: str, input_qos):
        self.node = rclpy.create_node(name, context=context)
        self.pub_kp = self.node.create_publisher(Skeleton2DArray, "keypoints_2d", input_qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", input_qos)
        self.outputs: dict[int, tuple[int, int]] = {}  # stamp ns -> (arrival ns, people)
        self.diagnostics: list[tuple[float, dict]] = []
        self.node.create_subscription(Skeleton3DArray, "skeletons_3d", self._on_output,
                                      QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context shut down under the spinning thread
            pass

    def _on_output(self, data: bytes):
        now = time.time_ns()
        # CDR, little endian: 4-byte encapsulation, stamp (int32, uint32), frame_id (uint32 length +
        # bytes), align 4, latency (int32, uint32), lookahead uint32, skeletons length uint32.
        sec, nanosec = int.from_bytes(data[4:8], "little", signed=True), int.from_bytes(data[8:12], "little")
        n = 16 + int.from_bytes(data[12:16], "little")
        n += -n % 4
        self.outputs[sec * NS + nanosec] = (now, int.from_bytes(data[n + 12:n + 16], "little"))

    def _on_diagnostics(self, msg: DiagnosticArray):
        for status in msg.status:
            if status.name.endswith(": lifting"):
                self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def last_diagnostics(self, before: float = float("inf")) -> dict:
        seen = [d for t, d in self.diagnostics if t <= before]
        return seen[-1] if seen else {}

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
