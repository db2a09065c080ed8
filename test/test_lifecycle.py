"""Lifecycle transitions as `ros2 lifecycle set` drives them (the node's services, over DDS), and
SIGINT/SIGTERM of the installed executables while they work (real processes)."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor

from conftest import next_domain_id, spin_until
from posemoe_ros.geometry.camera import project
from posemoe_ros.msg import Skeleton3DArray
from test_lift_node import FPS, K, Harness, camera_info, keypoint_msg, synthetic_person

NODE = "/posemoe_lift"
OUTPUT_TOPICS = ("/skeletons_3d", "/skeleton_markers", "/tf", "/diagnostics", "/overlay")


def _call(h: Harness, srv_type, name: str, request, timeout=10.0):
    client = h.peer.create_client(srv_type, name)
    try:
        assert spin_until(h.executor, client.service_is_ready, timeout), f"{name} not offered"
        future = client.call_async(request)
        assert spin_until(h.executor, future.done, timeout), f"{name} did not answer"
        return future.result()
    finally:
        h.peer.destroy_client(client)


def change_state(h: Harness, transition_id: int) -> bool:
    """What `ros2 lifecycle set` does: the node's change_state service."""
    return _call(h, ChangeState, f"{NODE}/change_state",
                 ChangeState.Request(transition=Transition(id=transition_id))).success


def state_of(h: Harness) -> str:
    return _call(h, GetState, f"{NODE}/get_state", GetState.Request()).current_state.label


class Walker:
    """A synthetic person's keypoints, one message per call, with advancing stamps."""

    def __init__(self):
        self.uv = project(synthetic_person(4.0), K)
        self.i = 0

    def next(self):
        self.i += 1
        return keypoint_msg(1_700_000_000_000_000_000 + self.i * 1_000_000_000 // FPS, [self.uv[self.i % len(self.uv)]],
                            ["5"])


def _publishers(h: Harness, topic: str) -> int:
    return h.peer.count_publishers(topic)


def _feed_for(h: Harness, walker: Walker, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        h.pub_kp.publish(walker.next())
        spin_until(h.executor, lambda: False, 1.0 / FPS)


@pytest.mark.parametrize("from_state", ["active", "inactive", "unconfigured"])
def test_shutdown_from_any_state_stops_lifting_and_releases_everything(ros_context, from_state):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, warn_period=60.0)
    try:
        walker = Walker()
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        h.send(walker.next(), expect_outputs=1)  # lifting
        lift_thread = h.node._lift_thread
        assert lift_thread.is_alive()
        if from_state != "active":
            assert change_state(h, Transition.TRANSITION_DEACTIVATE)
        if from_state == "unconfigured":
            assert change_state(h, Transition.TRANSITION_CLEANUP)
        assert state_of(h) == from_state

        h.pub_kp.publish(walker.next())  # still arriving as the transition comes
        assert change_state(h, {"active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
                                "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                                "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}[from_state])
        assert state_of(h) == "finalized"

        # Released: no subscription on the inputs, no publisher on the outputs, no timer, no thread.
        assert spin_until(h.executor, lambda: h.pub_kp.get_subscription_count() == 0
                          and h.pub_info.get_subscription_count() == 0
                          and all(_publishers(h, t) == 0 for t in OUTPUT_TOPICS), 5.0), \
            {t: _publishers(h, t) for t in OUTPUT_TOPICS}
        assert list(h.node.timers) == []
        assert not lift_thread.is_alive()
        # ... and nothing comes out, whatever comes in.
        outputs, tf, markers, diagnostics = len(h.out), len(h.tf), len(h.markers), len(h.diag)
        _feed_for(h, walker, 1.0)
        assert (len(h.out), len(h.tf), len(h.markers), len(h.diag)) == (outputs, tf, markers, diagnostics)
    finally:
        h.close()


def test_deactivate_stops_publishing_and_activate_resumes(ros_context):
    h = Harness(ros_context, input_reliability="reliable", diagnostics_period=0.2, warn_period=60.0)
    try:
        walker = Walker()
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        h.send(walker.next(), expect_outputs=1)
        assert spin_until(h.executor, lambda: h.diag and h.tf and h.markers, 5.0)

        assert change_state(h, Transition.TRANSITION_DEACTIVATE)
        assert state_of(h) == "inactive"
        assert spin_until(h.executor, lambda: h.pub_kp.get_subscription_count() == 0, 5.0)
        spin_until(h.executor, lambda: False, 0.3)  # what was in flight arrives
        outputs, tf, markers, diagnostics = len(h.out), len(h.tf), len(h.markers), len(h.diag)
        _feed_for(h, walker, 1.0)  # five diagnostics periods
        assert (len(h.out), len(h.tf), len(h.markers), len(h.diag)) == (outputs, tf, markers, diagnostics)

        assert change_state(h, Transition.TRANSITION_ACTIVATE)
        assert spin_until(h.executor, lambda: h.pub_kp.get_subscription_count() > 0, 5.0)
        h.send(walker.next(), expect_outputs=outputs + 1)
        assert spin_until(h.executor, lambda: len(h.diag) > diagnostics, 5.0)
    finally:
        h.close()


# ---- signals, with the installed executables -------------------------------------------------------
def _installed(executable: str) -> Path:
    from ament_index_python.packages import get_package_prefix
    return Path(get_package_prefix("posemoe_ros")) / "lib" / "posemoe_ros" / executable


def _start(executable: str, domain: int, log: Path, *params: str) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    args = [a for p in params for a in ("-p", p)]
    # run as a path, the way `ros2 run` does: the shebang picks the interpreter
    return subprocess.Popen([str(_installed(executable)), "--ros-args", *args], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _complaints(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if "Traceback" in line or "error" in line.lower() or "Failed to publish" in line]


PAIRS = 5  # 10 start/signal cycles: 5 lift nodes and 5 scenario players, each ended while working


def test_sigint_and_sigterm_end_the_installed_nodes_quietly_while_they_lift(tmp_path):
    """PAIRS lift node + scenario player pairs start at once (one DDS domain per pair; together,
    to keep the test short). Once every lift node is lifting its player's people, each pair is
    signalled: the lift node gets SIGINT and the player SIGTERM in one pair, the other way round in
    the next (the lifting thread's race with the signal came out in 5 of 8 Ctrl-Cs before). Every
    process must end by itself, with exit status 0 and not one error line."""
    procs, contexts, listeners, received = [], [], [], []
    try:
        for k in range(PAIRS):
            domain = next_domain_id()
            lift_log, player_log = tmp_path / f"lift{k}.log", tmp_path / f"player{k}.log"
            # torch: no ONNX export at start-up (the suite's cache is empty)
            lift = _start("lift_node", domain, lift_log, "device:=cpu", "backend:=torch",
                          "input_reliability:=reliable")
            player = _start("scenario_player", domain, player_log, "rate:=30.0", "num_people:=2",
                            "duration:=600.0", "lead_in:=0.0", "wait_for_subscribers:=1")
            procs.append(((lift, lift_log), (player, player_log)))
            context = rclpy.Context()
            rclpy.init(context=context, domain_id=domain)
            contexts.append(context)
            node = rclpy.create_node(f"listener{k}", context=context)
            got = []
            node.create_subscription(Skeleton3DArray, "skeletons_3d", got.append, 100)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            listeners.append((executor, node))
            received.append(got)

        deadline = time.monotonic() + 120.0  # five processes importing torch at once on a loaded machine
        while time.monotonic() < deadline and not all(len(got) >= 10 for got in received):
            for executor, _ in listeners:
                executor.spin_once(timeout_sec=0.02)
            assert all(p.poll() is None for pair in procs for p, _ in pair), "a process ended by itself"
        assert all(len(got) >= 10 for got in received), [len(got) for got in received]

        for k, ((lift, _), (player, _)) in enumerate(procs):
            lift.send_signal(signal.SIGINT if k % 2 == 0 else signal.SIGTERM)
            player.send_signal(signal.SIGTERM if k % 2 == 0 else signal.SIGINT)
        for pair in procs:
            for proc, log in pair:
                try:
                    status = proc.wait(20.0)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{log.name} ignored its signal for 20 s:\n{log.read_text()[-2000:]}")
                text = log.read_text(errors="replace")
                assert status == 0, f"{log.name} exit status {status}:\n{text[-2000:]}"
                assert not _complaints(text), f"{log.name}:\n{text[-3000:]}"
    finally:
        for pair in procs:
            for proc, _ in pair:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for executor, node in listeners:
            executor.shutdown()
            node.destroy_node()
        for context in contexts:
            context.try_shutdown()


def test_a_signal_while_the_node_still_starts_ends_it_quietly(tmp_path):
    """SIGINT at once, while the script still imports torch and rclpy: no KeyboardInterrupt."""
    log = tmp_path / "lift.log"
    lift = _start("lift_node", next_domain_id(), log, "device:=cpu")
    time.sleep(1.0)  # the script is importing (torch alone takes longer)
    lift.send_signal(signal.SIGINT)
    assert lift.wait(60.0) == 0, log.read_text()
    assert not _complaints(log.read_text()), log.read_text()
