"""A one-slot mailbox per camera between the subscription callback and the lifting thread.

When lifting falls behind, a queue would hand the lifter ever staler frames and grow the latency
without bound; here a newer message from the same camera replaces the pending one, and the
replaced one is counted as dropped. The subscription callback only stores (microseconds), so the
executor keeps draining DDS while a forward pass runs on the other thread.
"""
from __future__ import annotations

import threading
from typing import Any, Hashable


class LatestInputs:
    """Newest unprocessed item per key, taken oldest-pending-key first; thread-safe."""

    def __init__(self):
        self._pending: dict[Hashable, Any] = {}  # insertion order = order the pending items arrived
        self._ready = threading.Condition()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._ready:
            return len(self._pending)

    def put(self, key: Hashable, item) -> bool:
        """Store item as the newest for key; True if it replaced one never taken (a drop)."""
        with self._ready:
            replaced = self._pending.pop(key, None) is not None
            self._pending[key] = item
            self._ready.notify()
        return replaced

    def take(self, timeout: float | None = None):
        """The item of the key that has waited longest, or None after timeout or close()."""
        with self._ready:
            if not self._pending and not self._closed:
                self._ready.wait(timeout)
            if not self._pending or self._closed:
                return None
            return self._pending.pop(next(iter(self._pending)))

    def clear(self) -> int:
        """Forget every pending item; returns how many were discarded."""
        with self._ready:
            n = len(self._pending)
            self._pending.clear()
            return n

    def close(self):
        """Wake a waiting taker for good: take() returns None from now on."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
