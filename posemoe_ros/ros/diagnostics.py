"""What the node reports on /diagnostics: rates, latency percentiles, rejections by reason."""
from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header


class NodeStats:
    """Counters and recent latencies; rates are measured between two reports."""

    def __init__(self, latency_window: int = 1000):
        self.inputs = 0
        self.outputs = 0
        self.dropped = 0  # valid inputs skipped because inference fell behind
        self.rejected: Counter[str] = Counter()
        self.latencies = deque(maxlen=latency_window)  # seconds
        self._last_report = (time.monotonic(), 0, 0)

    def reject(self, reason: str):
        self.rejected[reason] += 1

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        p50, p90, p99 = np.percentile(np.asarray(self.latencies), [50, 90, 99])
        return {"p50": p50, "p90": p90, "p99": p99, "max": max(self.latencies)}

    def rates(self) -> tuple[float, float]:
        """(input Hz, output Hz) since the previous call."""
        now = time.monotonic()
        then, inputs, outputs = self._last_report
        self._last_report = (now, self.inputs, self.outputs)
        dt = max(now - then, 1e-6)
        return (self.inputs - inputs) / dt, (self.outputs - outputs) / dt


def diagnostic_array(stamp, name: str, hardware_id: str, stats: NodeStats, *, people_tracked: int,
                     device: str, model: str, camera_error: str | None, waiting_for: str | None) -> DiagnosticArray:
    input_hz, output_hz = stats.rates()
    latency = stats.latency_percentiles()
    level, message = DiagnosticStatus.OK, "lifting"
    if camera_error:
        level, message = DiagnosticStatus.ERROR, camera_error
    elif waiting_for:
        level, message = DiagnosticStatus.WARN, f"waiting for {waiting_for}"
    elif stats.rejected:
        level, message = DiagnosticStatus.WARN, f"{sum(stats.rejected.values())} inputs rejected"
    values = {
        "input_rate_hz": f"{input_hz:.2f}", "output_rate_hz": f"{output_hz:.2f}",
        "inputs": stats.inputs, "outputs": stats.outputs, "dropped_behind": stats.dropped,
        "people_tracked": people_tracked, "device": device, "model": model,
        **{f"latency_{k}_ms": f"{1000 * v:.2f}" for k, v in latency.items()},
        "rejected_total": sum(stats.rejected.values()),
        **{f"rejected_{reason}": count for reason, count in sorted(stats.rejected.items())},
    }
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


