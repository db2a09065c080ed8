"""The demo: the scripted scene (people enter and leave as scripted, keypoints a detector could
report), and the whole demo end to end in a short run (the real lift node in its own process,
an MCAP bag of every topic, the measured accuracy, the pictures, nothing left running)."""
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
from PIL import Image

from conftest import REPO
from posemoe_ros.geometry.camera import project
from posemoe_ros.pipeline.layouts import to_h36m
from posemoe_ros.ros.conversions import keypoints_from_msg
from posemoe_ros.ros.tools.mcap_io import read_messages, topic_types
from posemoe_ros.ros.tools.scenario_player import keypoints_msg
from posemoe_ros.skeleton import JOINT_INDEX
from posemoe_ros.tools.scenario import Scenario, ScenarioConfig
from std_msgs.msg import Header
from test_lift_node import MPJPE_BOUND_M

# Mean root error over the distance, monocular: the walker (1.75 m) and waver (1.65 m) against the
# node's 1.70 m body_height, ~3 % each, plus the model's error (docs/results.md, "Absolute position").
ROOT_BOUND_REL = 0.10
DEMO_TOPICS = {"keypoints_2d": "posemoe_ros/msg/Skeleton2DArray", "camera_info": "sensor_msgs/msg/CameraInfo",
               "skeletons_3d": "posemoe_ros/msg/Skeleton3DArray",
               "skeletons_3d_truth": "posemoe_ros/msg/Skeleton3DArray",
               "skeleton_markers": "visualization_msgs/msg/MarkerArray", "/tf": "tf2_msgs/msg/TFMessage",
               "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


def test_scenario_is_deterministic_and_people_come_and_go_as_scripted():
    config = ScenarioConfig(duration=20.0)
    a, b = Scenario(config), Scenario(config)
    assert np.array_equal(a.uv, b.uv) and np.array_equal(a.truth, b.truth)
    assert not np.allclose(Scenario(ScenarioConfig(duration=20.0, seed=1)).uv, a.uv)
    assert a.num_frames == 600 and a.layout == "coco17" and a.ids == ["walker", "waver", "late"]

    walker, waver, late = a.present
    assert walker.all() and waver.all()
    t = a.times
    assert not late[t < 0.25 * 20].any() and not late[t > 0.9 * 20].any() and late[np.abs(t - 10) < 2].all()
    assert [a.frame(i).ids for i in (0, 300, 599)] == [["walker", "waver"], ["walker", "waver", "late"],
                                                       ["walker", "waver"]]
    # every reported keypoint inside the image, every person in front of the camera
    seen = a.conf > 0
    assert np.all((a.uv[seen] >= 0) & (a.uv[seen] <= [a.width, a.height]))
    assert np.all(a.truth[a.present][..., 2] > 1.0)
    assert 0.8 < seen[a.present].mean() < 1.0  # detector noise: some keypoints missing, most there


def test_extra_people_stand_apart_in_view_for_the_whole_run():
    s = Scenario(ScenarioConfig(num_people=10, duration=10.0, seed=3))
    assert len(set(s.ids)) == 10 and s.present[3:].all()
    depth = s.truth[3:, :, 0, 2]
    assert depth.min() > 2.5 and depth.max() < 9.0
    pelvis = s.truth[:, :, 0][..., [0, 2]]  # (N,F,2)
    gaps = np.linalg.norm(pelvis[:, None] - pelvis[None], axis=-1).min(-1) + 10 * np.eye(10)
    assert gaps[3:].min() > 0.5  # nobody walks through anybody


def test_keypoints_are_the_node_mapping_inverted_and_survive_the_message():
    """Without noise, the node's coco17 -> H36M mapping gives back the true joints' projections."""
    s = Scenario(ScenarioConfig(num_people=2, duration=2.0, noise=False))
    frame = s.frame(30)
    xy, conf = to_h36m("coco17", frame.uv, frame.conf)
    error = np.linalg.norm(xy - project(frame.truth, s.K), axis=-1)
    spine = JOINT_INDEX["spine"]  # the procedural spine joint sits ~1 cm off the mid-torso point the node uses
    assert conf.min() == 1.0 and np.delete(error, spine, axis=1).max() < 1.5 and error[:, spine].max() < 8.0, error
    ids, uv, conf = keypoints_from_msg(keypoints_msg(frame, Header(), s.width, s.height), max_people=64)
    assert ids == frame.ids and np.allclose(uv, frame.uv, atol=1e-3) and np.allclose(conf, frame.conf)


def _alive(pid: int) -> bool:
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except FileNotFoundError:
        return False
    return b"lift_node" in cmdline  # a recycled pid is someone else


def test_demo_runs_end_to_end_and_is_accurate(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONPATH=str(REPO), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("ROS_DOMAIN_ID", None)  # the demo picks a random domain
    # Two people: the late one enters at the image edge, where the shipped model misjudges size
    # (docs/demo.md); the full three-person run is measured in docs/demo.md.
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "posemoe-demo"), "--duration", "4", "--people", "2",
                          "--out", str(out), "--gif-frames", "30"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "MPJPE" in run.stdout and "latency" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert not _alive(summary["lift_node_pid"]) and summary["lift_node_exit_code"] == 0

    # measured, and within the bounds the node's own test justifies
    assert summary["people_lifted"] == ["walker", "waver"]
    assert summary["frames_published"] == 120
    assert summary["frames_lifted"] >= 0.9 * 120
    assert summary["inputs_dropped"] == summary["inputs_without_output"] + sum(summary["node_rejected"].values())
    assert summary["mpjpe_m"] < MPJPE_BOUND_M, summary
    assert summary["root_error_rel"] < ROOT_BOUND_REL, summary
    assert summary["p_mpjpe_m"] < summary["mpjpe_m"]
    assert 0 < summary["latency_p50_s"] <= summary["latency_p99_s"] < 5.0

    # the bag: every topic with its type, readable, and its counts consistent with the run
    bag = out / "demo.mcap"
    assert topic_types(bag) == DEMO_TOPICS
    counts, keypoint_stamps, output_stamps = Counter(), set(), set()
    for topic, msg, _ in read_messages(bag):
        counts[topic] += 1
        if topic == "keypoints_2d":
            assert msg.layout == "coco17" and msg.width == 1280
            keypoint_stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        elif topic == "skeletons_3d":
            output_stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
    assert dict(counts) == summary["mcap_messages"]
    assert counts["keypoints_2d"] == counts["skeletons_3d_truth"] == 120
    assert counts["camera_info"] >= 120 and counts["/diagnostics"] >= 1
    assert counts["skeletons_3d"] == summary["frames_lifted"] and output_stamps <= keypoint_stamps
    assert counts["skeleton_markers"] == counts["/tf"] == counts["skeletons_3d"]

    # the pictures open as what they claim to be
    for name, fmt in (("skeletons.png", "PNG"), ("latency.png", "PNG"), ("scene.gif", "GIF")):
        with Image.open(out / name) as image:
            assert image.format == fmt and image.size[0] > 300
            if fmt == "GIF":
                assert image.n_frames >= 20
