"""Offline lifting: ROS 2 MCAP bags without ROS tools, and `posemoe-lift` on a bag and on a COCO
JSON giving the very 3D the running node publishes for the same input."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
from geometry_msgs.msg import TransformStamped
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage

from conftest import REPO, spin_until
from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.geometry.camera import project
from posemoe_ros.msg import Keypoint2D, Skeleton2D, Skeleton2DArray, Skeleton3D, Skeleton3DArray
from posemoe_ros.ros.tools import lift_cli
from posemoe_ros.ros.tools.mcap_io import DEFINITION_SEPARATOR, McapWriter, read_messages, topic_types
from posemoe_ros.skeleton import JOINT_NAMES
from posemoe_ros.tools.offline import read_keypoints
from test_lift_node import FPS, K, Harness, _stamp, camera_info, keypoint_msg, synthetic_person


def _sample_messages():
    kp = Skeleton2DArray(width=640, height=480, layout="coco17", skeletons=[
        Skeleton2D(id="4", keypoints=[Keypoint2D(x=1.5 + i, y=2.25, confidence=0.5) for i in range(17)])])
    kp.header.frame_id, kp.header.stamp.sec, kp.header.stamp.nanosec = "cam", 12, 345
    out = Skeleton3DArray(lookahead=3, skeletons=[Skeleton3D(id="4", joint_names=["pelvis"], confidence=[0.25],
                                                             root_source=Skeleton3D.ROOT_SOURCE_DEPTH)])
    out.skeletons[0].root_position.z = 4.5
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.1, 0, 0, 0, 0])
    info.k = [600.0, 0, 319.5, 0, 600.0, 239.5, 0, 0, 1]
    tf = TFMessage(transforms=[TransformStamped(child_frame_id="body_4")])
    tf.transforms[0].transform.rotation.w = 1.0
    return [("/keypoints_2d", kp, 1_000), ("/skeletons_3d", out, 2_000), ("/camera_info", info, 3_000),
            ("/tf", tf, 4_000), ("/keypoints_2d", kp, 5_000)]


def test_mcap_round_trip_is_exact_and_the_schema_text_decodes_independently(tmp_path):
    path = tmp_path / "bag.mcap"
    sent = _sample_messages()
    with McapWriter(path) as writer:
        for topic, msg, t in sent:
            writer.write(topic, msg, t)

    assert topic_types(path) == {"/keypoints_2d": "posemoe_ros/msg/Skeleton2DArray",
                                 "/skeletons_3d": "posemoe_ros/msg/Skeleton3DArray",
                                 "/camera_info": "sensor_msgs/msg/CameraInfo", "/tf": "tf2_msgs/msg/TFMessage"}
    got = list(read_messages(path))
    assert [(t, type(m), s) for t, m, s in got] == [(t, type(m), s) for t, m, s in sent]
    assert all(m == original for (_, m, _), (_, original, _) in zip(got, sent))  # rclpy messages compare by value
    assert [t for t, _, _ in read_messages(path, topics=["/tf"])] == ["/tf"]

    # A ROS 2 bag as rosbag2 writes it, decoded from its own schema text by mcap_ros2 (no rclpy).
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        kp_schema = next(s for s in summary.schemas.values() if s.name == "posemoe_ros/msg/Skeleton2DArray")
        text = kp_schema.data.decode()
        for nested in ("std_msgs/Header", "builtin_interfaces/Time", "posemoe_ros/Skeleton2D",
                       "posemoe_ros/Keypoint2D"):
            assert f"{DEFINITION_SEPARATOR}\nMSG: {nested}\n" in text
        decoded = [(c.topic, d) for _, c, _, d in reader.iter_decoded_messages()]
    kp = decoded[0][1]
    assert kp.layout == "coco17" and kp.header.stamp.nanosec == 345 and kp.skeletons[0].id == "4"
    assert [k.x for k in kp.skeletons[0].keypoints] == [1.5 + i for i in range(17)]
    assert decoded[1][1].skeletons[0].root_position.z == 4.5 and decoded[1][1].lookahead == 3
    assert list(decoded[2][1].k) == sent[2][1].k.tolist() and decoded[2][1].distortion_model == "plumb_bob"
    assert decoded[3][1].transforms[0].child_frame_id == "body_4"


def test_mcap_writer_takes_messages_from_several_threads(tmp_path):
    path = tmp_path / "threads.mcap"
    with McapWriter(path) as writer:
        def publish(n: int):
            for i in range(200):
                writer.write(f"/t{n}", TFMessage(transforms=[TransformStamped(child_frame_id=f"{n}_{i}")]),
                             i * 10 + n)
        threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    got = list(read_messages(path))
    assert len(got) == 800
    assert [s for _, _, s in got] == sorted(i * 10 + n for n in range(4) for i in range(200))
    assert {m.transforms[0].child_frame_id for _, m, _ in got} == {f"{n}_{i}" for n in range(4) for i in range(200)}


# ---- posemoe-lift against the node -----------------------------------------------------------
LOOKAHEAD = 2
FRAMES = 34  # the model's window (27) plus a few, so both paths run full windows


def _coco17(cam: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (F,17,3) of H36M joints: face points beside the nose and head."""
    j = {n: cam[:, i] for i, n in enumerate(JOINT_NAMES)}
    left = j["l_shoulder"] - j["r_shoulder"]
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    face = 0.5 * (j["neck_nose"] + j["head"])
    points = [j["neck_nose"], face + 0.03 * left, face - 0.03 * left, face + 0.075 * left, face - 0.075 * left]
    points += [j[f"{s}_{part}"] for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in "lr"]
    return np.stack(points, 1)


def _two_people():
    """(ids, uv (F,2,17,2) pixels as float32 values, conf (F,2,17)): a walker and a waver."""
    walker = synthetic_person(FRAMES / FPS)[:FRAMES]
    world = generate_motion("wave", seconds=FRAMES / FPS, fps=FPS, seed=1)
    waver = np.stack([-world[..., 0] + 1.2, -(world[..., 1] - 1.2), world[..., 2] + 5.0], -1)
    uv = np.stack([project(_coco17(p), K) for p in (walker, waver)], 1).astype(np.float32).astype(np.float64)
    conf = np.full(uv.shape[:3], 0.9, np.float32).astype(np.float64)
    conf[10:14, 1, 9] = 0.0  # a missed wrist for a few frames
    return ["7", "8"], uv, conf


def _keypoint_msgs(ids, uv, conf):
    msgs = []
    for i in range(len(uv)):
        msg = keypoint_msg(_stamp(i), uv[i], ids, layout="coco17")
        for s in range(len(ids)):
            for k, c in zip(msg.skeletons[s].keypoints, conf[i, s]):
                k.confidence = float(c)
        msgs.append(msg)
    return msgs


def _write_bag(path, msgs):
    with McapWriter(path) as writer:
        writer.write("/camera_info", camera_info(), _stamp(0) - 1)
        for i, msg in enumerate(msgs):
            writer.write("/keypoints_2d", msg, _stamp(i))


def _write_coco_json(path, ids, uv, conf):
    """The COCO results layout trackers write: one record per person and frame."""
    records = [{"image_id": i, "track_id": int(pid), "category_id": 1, "score": 0.95,
                "keypoints": np.concatenate([uv[i, s], conf[i, s, :, None]], -1).ravel().tolist()}
               for i in range(FRAMES) for s, pid in enumerate(ids)]
    path.write_text(json.dumps({"fps": FPS, "width": 640, "height": 480, "camera": {"K": K.tolist()},
                                "annotations": records}))


def _node_outputs(context, msgs):
    h = Harness(context, input_reliability="reliable", lookahead=LOOKAHEAD)
    try:
        h.pub_info.publish(camera_info())
        assert spin_until(h.executor, lambda: h.node._camera is not None, 5.0)
        for i, msg in enumerate(msgs):  # one at a time, so the node lifts every message (none replaced)
            h.send(msg, expect_outputs=i + 1 - LOOKAHEAD if i >= LOOKAHEAD else None)
        assert getattr(h.node.stats, "dropped", 0) == 0
        return list(h.out)
    finally:
        h.close()


def _positions(skeleton) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in skeleton.positions])


def test_posemoe_lift_on_a_bag_and_a_coco_json_matches_the_node(ros_context, tmp_path):
    ids, uv, conf = _two_people()
    msgs = _keypoint_msgs(ids, uv, conf)
    _write_bag(tmp_path / "walk.mcap", msgs)
    _write_coco_json(tmp_path / "walk_coco.json", ids, uv, conf)
    node = _node_outputs(ros_context, msgs)
    assert len(node) == FRAMES - LOOKAHEAD

    # The bag, in-process; the JSON through the installed-style script in a fresh interpreter.
    assert lift_cli.main([str(tmp_path / "walk.mcap"), "--out", str(tmp_path / "bag"), "--lookahead",
                          str(LOOKAHEAD), "--no-render", "--quiet"]) == 0
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "posemoe-lift"), str(tmp_path / "walk_coco.json"),
                          "--out", str(tmp_path / "json"), "--lookahead", str(LOOKAHEAD)],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "frames/s" in run.stdout and "wrote" in run.stdout
    assert (tmp_path / "json" / "walk_coco.gif").read_bytes()[:6] == b"GIF89a"

    from_bag = np.load(tmp_path / "bag" / "walk_3d.npz")
    from_json = np.load(tmp_path / "json" / "walk_coco_3d.npz")
    doc = json.loads((tmp_path / "json" / "walk_coco_3d.json").read_text())
    assert list(from_bag["ids"]) == list(from_json["ids"]) == ids and doc["ids"] == ids
    assert from_bag["joints"].shape == (2, FRAMES, 17, 3)
    assert np.isnan(from_bag["joints"][:, FRAMES - LOOKAHEAD:]).all()  # the node never lifts the last k either
    for f, out in enumerate(node):
        assert out.header.stamp.sec * 10**9 + out.header.stamp.nanosec == from_bag["stamps_ns"][f] == _stamp(f)
        assert out.lookahead == LOOKAHEAD and [s.id for s in out.skeletons] == ids
        for n, skeleton in enumerate(out.skeletons):
            expected = _positions(skeleton)
            assert np.isfinite(from_bag["joints"][n, f]).all() and np.isfinite(from_json["joints"][n, f]).all()
            np.testing.assert_allclose(from_bag["joints"][n, f], expected, atol=1e-4)
            np.testing.assert_allclose(from_json["joints"][n, f], expected, atol=1e-4)
            person = doc["frames"][f]["people"][n]
            assert person["id"] == ids[n]
            np.testing.assert_allclose(person["positions"], expected, atol=1e-4)
            np.testing.assert_allclose(from_bag["confidence"][n, f], skeleton.confidence, atol=1e-6)

    # The output bag holds what the node published: skeletons, markers and TF.
    out_bag = tmp_path / "bag" / "walk_3d.mcap"
    assert topic_types(out_bag) == {"/skeletons_3d": "posemoe_ros/msg/Skeleton3DArray",
                                    "/skeleton_markers": "visualization_msgs/msg/MarkerArray",
                                    "/tf": "tf2_msgs/msg/TFMessage"}
    replayed = [m for _, m, _ in read_messages(out_bag, ["/skeletons_3d"])]
    assert len(replayed) == len(node)
    for mine, theirs in zip(replayed, node):
        assert mine.header == theirs.header and [s.id for s in mine.skeletons] == ids
        for a, b in zip(mine.skeletons, theirs.skeletons):
            np.testing.assert_allclose(_positions(a), _positions(b), atol=1e-4)
    tf_frames = {t.child_frame_id for _, m, _ in read_messages(out_bag, ["/tf"]) for t in m.transforms}
    assert {"body_7", "body_8", "head_7", "l_wrist_8"} <= tf_frames


def test_keypoint_readers_take_the_formats_trackers_write(tmp_path):
    """COCO results, a COCO/PoseTrack dataset with visibility flags, MMPose per-frame instances
    and npz give the same frames; frames nobody is in stay (empty), ids may be absent."""
    ids, uv, conf = _two_people()
    uv, conf = uv[:6], conf[:6]
    present = [(f, s) for f in range(6) for s in range(2) if f != 3]  # frame 3: nobody detected
    (tmp_path / "results.json").write_text(json.dumps(
        [{"image_id": f, "track_id": int(ids[s]), "keypoints": np.c_[uv[f, s], conf[f, s]].ravel().tolist()}
         for f, s in present]))
    (tmp_path / "posetrack.json").write_text(json.dumps({
        "images": [{"id": 100 + f, "file_name": f"{f:06d}.jpg", "width": 640, "height": 480} for f in range(6)],
        "annotations": [{"id": n, "image_id": 100 + f, "track_id": int(ids[s]), "category_id": 1,
                         "keypoints": np.c_[uv[f, s], 2 * (conf[f, s] > 0)].ravel().tolist()}
                        for n, (f, s) in enumerate(present)]}))
    (tmp_path / "mmpose.json").write_text(json.dumps([
        {"frame_id": f, "instances": [{"keypoints": uv[f, s].tolist(), "keypoint_scores": conf[f, s].tolist()}
                                      for s in range(2) if (f, s) in present]} for f in range(6)]))
    mask = np.array([[(f, s) in present for s in range(2)] for f in range(6)])
    np.savez(tmp_path / "tracks.npz", keypoints=np.where(mask[..., None, None], np.c_[uv, conf[..., None]].reshape(
        6, 2, 17, 3), np.nan), ids=np.array(ids), fps=15.0, K=K, image_size=[640, 480])

    for name, expect_ids, flags in (("results.json", ids, False), ("posetrack.json", ids, True),
                                    ("mmpose.json", ["", ""], False), ("tracks.npz", ids, False)):
        seq = read_keypoints(tmp_path / name)
        assert len(seq.frames) == 6 and seq.frames[3].ids == [], name
        for f in (0, 1, 5):
            frame = seq.frames[f]
            assert frame.layout == "coco17" and frame.ids == expect_ids, name
            np.testing.assert_allclose(frame.uv, uv[f], err_msg=name)
            np.testing.assert_allclose(frame.conf, (conf[f] > 0) if flags else conf[f], err_msg=name)
    npz = read_keypoints(tmp_path / "tracks.npz")
    assert npz.fps == 15.0 and npz.frames[1].stamp_ns == round(1e9 / 15) and np.allclose(npz.camera[0], K)
    assert read_keypoints(tmp_path / "posetrack.json").image_size == (640, 480)


# ---- clear errors ---------------------------------------------------------------------------
def _lift_error(capsys, *argv) -> str:
    """posemoe-lift's one-line error for argv (exit status 2, no traceback)."""
    assert lift_cli.main([str(a) for a in argv] + ["--no-render", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posemoe-lift: error: ") and "\n" not in err, err
    return err


def test_missing_topic_unknown_layout_and_garbage_files_give_one_clear_line(tmp_path, capsys):
    ids, uv, conf = _two_people()
    bag = tmp_path / "no_info.mcap"
    with McapWriter(bag) as writer:
        for i, msg in enumerate(_keypoint_msgs(ids, uv[:3], conf[:3])):
            writer.write("/yolo/keypoints", msg, _stamp(i))
    err = _lift_error(capsys, bag, "--out", tmp_path)
    assert "no topic /keypoints_2d" in err and "/yolo/keypoints (posemoe_ros/msg/Skeleton2DArray)" in err
    err = _lift_error(capsys, bag, "--out", tmp_path, "--keypoints-topic", "/yolo/keypoints")
    assert "no topic /camera_info" in err  # and no --fx to stand in for it
    assert lift_cli.main([str(bag), "--out", str(tmp_path), "--keypoints-topic", "/yolo/keypoints", "--fx", "600",
                          "--no-render", "--quiet"]) == 0  # the command line's intrinsics do
    assert np.load(tmp_path / "no_info_3d.npz")["K"][0, 2] == 319.5  # centre of the bag's 640x480 image

    coco = tmp_path / "hands.json"
    _write_coco_json(coco, ids, uv, conf)
    assert "unknown keypoint layout 'openpose_hands'" in _lift_error(capsys, coco, "--layout", "openpose_hands")
    doc = json.loads(coco.read_text())
    coco.write_text(json.dumps({**doc, "layout": "body25"}))
    assert "layout 'body25' has 25 keypoints, the file has 17" in _lift_error(capsys, coco)
    coco.write_text(json.dumps({k: v for k, v in doc.items() if k != "camera"}))
    assert "gives no intrinsics" in _lift_error(capsys, coco, "--out", tmp_path)

    rng = np.random.default_rng(0)
    for name in ("garbage.mcap", "garbage.json", "garbage.npz"):
        (tmp_path / name).write_bytes(rng.bytes(2000))
        assert name in _lift_error(capsys, tmp_path / name, "--out", tmp_path, "--fx", "600")
    (tmp_path / "points.csv").write_text("1,2,3")
    assert "unknown input type '.csv'" in _lift_error(capsys, tmp_path / "points.csv")
    assert "input not found" in _lift_error(capsys, tmp_path / "absent.mcap")
