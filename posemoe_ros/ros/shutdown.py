"""SIGINT and SIGTERM end a node's process quietly, in order, with exit status 0.

rclpy's own handlers shut the context down from inside the signal: a thread still working (the
lift node's lifting thread) then publishes into a dead context (`RCLError: publisher's context is
invalid`) and its log line cannot reach /rosout. Here a signal only sets a flag; the spin loop
sees it within one `period`, and main() tears the node down in order: its threads and entities
first, the context last. Installed before the heavy imports (torch), a signal that comes before
main() calls defer() (nothing to tear down yet) ends the process at once, quietly, with status 0:
`ros2 launch` escalates to SIGKILL after 5 + 10 s, and imports on a loaded machine take longer.
"""
from __future__ import annotations

import signal
import threading

_requested = threading.Event()
_deferred = False  # False: exit at the signal; True: set the flag for the spin loop
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _on_signal(signum, frame):  # noqa: ARG001 - the signal module's signature
    _requested.set()
    if not _deferred:
        raise SystemExit(0)  # still importing: nothing to tear down (SystemExit prints nothing)


def defer() -> None:
    """From now on a signal only sets the flag: called just before rclpy.init."""
    global _deferred
    _deferred = True


def install() -> None:
    """Route SIGINT and SIGTERM to the flag (main thread only, as the signal module requires)."""
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)


def requested() -> bool:
    """Whether SIGINT or SIGTERM has arrived since install()."""
    return _requested.is_set()


def spin(executor, until=lambda: False, period: float = 0.1) -> None:
    """Spin until a signal, `until()` or the end of the executor's context.

    spin_once with a short timeout, because a Python signal handler runs only between bytecodes,
    never inside the wait."""
    context = executor.context
    while not _requested.is_set() and context.ok() and not until():
        executor.spin_once(timeout_sec=period)


def spin_node(node, until=lambda: False) -> None:
    """Spin `node` alone until a signal, `until()` or the context's end, then tear down in order:
    the executor, the node (its threads, then its entities), the context last."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin(executor, until)
    except ExternalShutdownException:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        import rclpy
        rclpy.try_shutdown()
