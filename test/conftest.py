"""Shared fixtures: an isolated rclpy context per test, and paths to the repo and its data."""
import itertools
import os
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The onnxruntime backend caches its ONNX export under XDG_CACHE_HOME: keep the suite's apart from
# the user's (and hermetic in CI); child processes inherit it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="posemoe-test-cache-")
SHARED_DATA = REPO.parent / "shared" / "data"

# Each test gets its own DDS domain, so tests (and parallel CI runs) never see each other.
_domain_ids = itertools.count((os.getpid() * 7) % 90 + 1)


def next_domain_id() -> int:
    return next(_domain_ids) % 200 + 1


@pytest.fixture
def ros_context():
    rclpy = pytest.importorskip("rclpy")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain_id())
    yield context
    context.try_shutdown()


def spin_until(executor, predicate, timeout: float = 10.0) -> bool:
    """Spin until predicate() is true or the timeout passes; returns predicate()."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return predicate()
