"""What the node reports on /diagnostics: rates, latency percentiles, rejections by reason."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

# Rejections that mean a bug in this node, not bad input: reported as ERROR.
INTERNAL_ERROR = "internal_error"


class NodeStats:
    """Counters and recent latencies; rates are measured between two reports.

    The executor thread (validation) and the lifting thread both count, so every update goes
    through a method that holds the lock; `report()` reads a consistent snapshot.
    """

    def __init__(self, latency_window: int = 1000):
        self.inputs = 0
        self.outputs = 0
        self.dropped = 0  # valid inputs skipped because inference fell behind
        self.time_resets = 0  # stamps that went back (a looping bag, a restarted clock): tracks reset
        self.rejected: Counter[str] = Counter()
        self.latencies = deque(maxlen=latency_window)  # seconds
        self._lock = threading.Lock()
        self._last_report = (time.monotonic(), 0, 0, 0)  # time, inputs, outputs, rejections

    def count_input(self):
        with self._lock:
            self.inputs += 1

    def count_output(self, latency_s: float):
        with self._lock:
            self.outputs += 1
            self.latencies.append(latency_s)

    def count_dropped(self, n: int = 1):
        with self._lock:
            self.dropped += n

    def count_time_reset(self):
        with self._lock:
            self.time_resets += 1

    def reject(self, reason: str, count: int = 1):
        with self._lock:
            self.rejected[reason] += count

    def latency_percentiles(self) -> dict[str, float]:
        with self._lock:
            latencies = np.asarray(self.latencies)
        if not latencies.size:
            return {}
        p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
        return {"p50": p50, "p90": p90, "p99": p99, "max": latencies.max()}

    def report(self) -> dict:
        """Totals, plus rates and new rejections since the previous report."""
        with self._lock:
            now, inputs, outputs = time.monotonic(), self.inputs, self.outputs
            rejected, total = dict(self.rejected), sum(self.rejected.values())
            then, inputs0, outputs0, total0 = self._last_report
            self._last_report = (now, inputs, outputs, total)
            totals = dict(inputs=inputs, outputs=outputs, dropped=self.dropped, time_resets=self.time_resets)
        dt = max(now - then, 1e-6)
        return dict(totals, rejected=rejected, rejected_total=total, new_rejections=total - total0, period_s=dt,
                    input_hz=(inputs - inputs0) / dt, output_hz=(outputs - outputs0) / dt)


def diagnostic_array(stamp, name: str, hardware_id: str, stats: NodeStats, *, people_tracked: int,
                     device: str, model: str, camera_error: str | None, waiting_for: str | None) -> DiagnosticArray:
    """One status. ERROR: an unusable CameraInfo, or an internal error ever; WARN: waiting for
    camera_info, or inputs rejected since the previous report (a node that met one bad message
    an hour ago is OK again; the totals stay in the values)."""
    r = stats.report()
    latency = stats.latency_percentiles()
    level, message = DiagnosticStatus.OK, "lifting"
    if r["rejected"].get(INTERNAL_ERROR):
        level, message = DiagnosticStatus.ERROR, f"{r['rejected'][INTERNAL_ERROR]} internal error(s); see the log"
    elif camera_error:
        level, message = DiagnosticStatus.ERROR, camera_error
    elif waiting_for:
        level, message = DiagnosticStatus.WARN, f"waiting for {waiting_for}"
    elif r["new_rejections"]:
        level = DiagnosticStatus.WARN
        message = f"{r['new_rejections']} inputs rejected in the last {r['period_s']:.1f} s"
    values = {
        "input_rate_hz": f"{r['input_hz']:.2f}", "output_rate_hz": f"{r['output_hz']:.2f}",
        "inputs": r["inputs"], "outputs": r["outputs"], "dropped_behind": r["dropped"],
        "time_resets": r["time_resets"], "people_tracked": people_tracked, "device": device, "model": model,
        **{f"latency_{k}_ms": f"{1000 * v:.2f}" for k, v in latency.items()},
        "rejected_total": r["rejected_total"],
        **{f"rejected_{reason}": count for reason, count in sorted(r["rejected"].items())},
    }
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
