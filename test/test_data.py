"""Data pipeline: real mocap files, splits, camera maths, virtual cameras, augmentation, noise, windows."""
from pathlib import Path

import numpy as np
import pytest
import torch

from posemoe_ros.data.bone_length import BoneConfig, augment_bone_lengths
from posemoe_ros.data.detector_noise import NoiseConfig, corrupt_keypoints, detector_keypoints
from posemoe_ros.data.h36m import TEST_SUBJECTS, camera_intrinsics, load_h36m_2d, load_h36m_3d
from posemoe_ros.data.mocap import Clip, load_clips
from posemoe_ros.data.procedural import KINDS, generate_motion
from posemoe_ros.data.splits import VAL_EXTRA_SUBJECTS, make_splits
from posemoe_ros.data.virtual_camera import CameraConfig, sample_camera
from posemoe_ros.data.windows import LiftingWindows, clip_windows
from posemoe_ros.geometry.camera import intrinsics_matrix, normalized_to_pixels, pixels_to_normalized, project, world_to_camera
from posemoe_ros.geometry.stature import bone_lengths, standing_height
from posemoe_ros.skeleton import JOINT_NAMES
from posemoe_ros.skeleton import BONES, JOINT_INDEX as J

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BANDAI, CMU, EXTRA = DATA / "bandai_h36m17.npz", DATA / "cmu_h36m17.npz", DATA / "extra_h36m17.npz"
needs_data = pytest.mark.skipif(not (BANDAI.exists() and CMU.exists() and EXTRA.exists()),
                                reason="mocap data not present")


def in_view(uv, size, margin=0.0):
    w, h = size
    return bool(np.all((uv[..., 0] >= -margin) & (uv[..., 0] <= w + margin)
                       & (uv[..., 1] >= -margin) & (uv[..., 1] <= h + margin)))


@pytest.fixture(scope="module")
def splits():
    if not (BANDAI.exists() and CMU.exists() and EXTRA.exists()):
        pytest.skip("mocap data not present")
    return make_splits(BANDAI, CMU, extra_path=EXTRA)


@needs_data
def test_load_real_files():
    cmu = load_clips(CMU)
    assert len(cmu) == 52 and {c.meta["subject"] for c in cmu} == {"5", "6", "7", "8", "10", "16", "32", "35"}
    clip = cmu[0]
    assert clip.joints.dtype == np.float32 and clip.joints.shape[1:] == (17, 3) and clip.fps == 30
    with np.load(CMU) as raw:  # world = root + pelvis-relative j3d
        np.testing.assert_allclose(clip.joints[:, 0], raw[f"root_{clip.name}"], atol=1e-3)
    feet = clip.joints[:, [J["r_ankle"], J["l_ankle"]], 1].min(1)
    assert np.all(feet > -0.1) and np.median(feet) < 0.2  # Y up, floor near 0


def test_splits_disjoint_deterministic(splits):
    names = {k: [c.name for c in v] for k, v in splits.items()}
    assert all(names.values())
    assert not (set(names["train"]) & set(names["val"]) or set(names["train"]) & set(names["test"])
                or set(names["val"]) & set(names["test"]))
    assert sum(map(len, names.values())) == 3076 + 52 + 67
    test_subjects = {c.meta["subject"] for c in splits["test"]}
    assert all(c.meta["source"] == "cmu" for c in splits["test"]) and len(test_subjects) == 4
    train_cmu = {c.meta["subject"] for c in splits["train"] if c.meta["source"] == "cmu"}
    assert train_cmu and not (train_cmu & test_subjects)
    assert {c.meta["style"] for c in splits["val"] if c.meta["source"] == "bandai"} == {"tired", "elderly"}
    extra = {k: {c.meta["subject"] for c in v if c.meta["source"] == "extra"} for k, v in splits.items()}
    assert extra["val"] == set(VAL_EXTRA_SUBJECTS) and not extra["test"]
    assert {s.split("_")[0] for s in extra["train"]} == {"cmu", "reactidle"} and not extra["train"] & extra["val"]
    # deterministic, and the old two-file call still works: the same Bandai / CMU clips in the same order
    old = {k: [c.name for c in v] for k, v in make_splits(BANDAI, CMU).items()}
    assert old == {k: [c.name for c in v if c.meta["source"] != "extra"] for k, v in splits.items()}


def _write_npz(path, clips: dict, **meta):
    """A file in the shared data format (README of ../shared/data) with procedural motions."""
    arrays = {"keys": np.array(list(clips)), "joint_names": np.array(JOINT_NAMES), "fps": np.array(30.0)}
    for name, world in clips.items():
        arrays[f"j3d_{name}"] = (world - world[:, :1]).astype(np.float16)
        arrays[f"root_{name}"] = world[:, 0].astype(np.float32)
    np.savez(path, **arrays, **{k: np.array(v) for k, v in meta.items()})


def test_extra_clips_of_test_subjects_never_train(tmp_path):
    walk = lambda seed: generate_motion("walk", 1.0, seed=seed)
    _write_npz(tmp_path / "bandai.npz", {"dataset-1_walk_normal_001": walk(0), "dataset-1_walk_tired_002": walk(1)},
               content=[1, 1], style=[0, 1])
    _write_npz(tmp_path / "cmu.npz", {"05_01": walk(2), "06_01": walk(3), "08_01": walk(4)},
               subject=[5, 6, 8], trial=[1, 1, 1])
    subjects = ["cmu_05", "cmu_94", "cmu_03", "reactidle_009", "reactidle_007"]
    _write_npz(tmp_path / "extra.npz", {f"x{i}": walk(10 + i) for i in range(5)}, subject=subjects,
               trial=["05_01", "94_01", "03_01", "acted", "acted"], source=["github:a/b"] * 5,
               skeleton=["cgspeed_daz"] * 3 + ["reactidle_009_acted", "reactidle_007_acted"])
    s = make_splits(tmp_path / "bandai.npz", tmp_path / "cmu.npz", extra_path=tmp_path / "extra.npz")
    subject = lambda split: sorted(c.meta["subject"] for c in s[split] if c.meta["source"] != "bandai")
    assert subject("test") == ["5"] and subject("val") == ["8", "cmu_94", "reactidle_009"]
    assert subject("train") == ["6", "cmu_03", "reactidle_007"]                  # cmu_05 (a test person) dropped
    clip = next(c for c in s["train"] if c.meta.get("subject") == "reactidle_007")
    assert clip.meta["skeleton"] == "reactidle_007_acted" and clip.joints.shape == (30, 17, 3)


@pytest.mark.parametrize("dist", [None, np.array([-0.25, 0.08, 0.001, -0.002, 0.0])])
def test_projection_round_trip(dist):
    K = intrinsics_matrix(900.0, 880.0, 650.0, 350.0)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.5, 0.5, (4, 5, 2))
    xy[0, 0] = np.nan
    uv = normalized_to_pixels(xy, K, dist)
    back = pixels_to_normalized(uv, K, dist)
    assert back.shape == xy.shape and np.isnan(back[0, 0]).all()
    np.testing.assert_allclose(back[1:], xy[1:], atol=1e-5)
    if dist is not None:  # distortion really moved the pixels
        assert np.abs(uv[1:] - normalized_to_pixels(xy[1:], K)).max() > 1.0
    points = np.concatenate([xy[1:] * 3.0, np.full((3, 5, 1), 3.0)], -1)
    np.testing.assert_allclose(project(points, K), normalized_to_pixels(xy[1:], K), atol=1e-9)


def test_world_to_camera_optical_frame():
    joints = generate_motion("walk", 1.0)
    cam = sample_camera(joints, np.random.default_rng(3))
    x = world_to_camera(joints, cam.R, cam.t)
    head_above_ankle = x[:, J["head"], 1] < x[:, J["r_ankle"], 1]  # y down in the image
    assert head_above_ankle.mean() > 0.9 and np.all(x[..., 2] > 0)
    np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-9)
    assert np.isclose(np.linalg.det(cam.R), 1.0)


def test_virtual_cameras_in_view_and_in_range():
    cfg = CameraConfig()
    rng = np.random.default_rng(1)
    focal = []
    for i in range(100):
        joints = generate_motion(KINDS[i % len(KINDS)], 2.0, seed=i)
        cam = sample_camera(joints, rng, cfg)
        x = world_to_camera(joints, cam.R, cam.t)
        assert in_view(project(x, cam.K), cam.image_size, margin=1e-6) and x[..., 2].min() > 0.4
        position = -cam.R.T @ cam.t
        assert cfg.height_range[0] <= position[1] <= cfg.height_range[1]
        assert abs(np.degrees(np.arcsin(cam.R[2, 1]))) <= cfg.max_pitch_deg + 1e-6  # forward.y = sin(pitch)
        assert cam.K[0, 0] == cam.K[1, 1] and cam.K[0, 0] <= cfg.focal_range[1]
        focal.append(cam.K[0, 0])
    assert np.mean(np.array(focal) >= cfg.focal_range[0]) > 0.9 and np.ptp(focal) > 500


def test_bone_augmentation_keeps_directions_and_height():
    joints = generate_motion("walk", 2.0).astype(np.float64)
    rng = np.random.default_rng(0)
    heights = []
    for _ in range(30):
        out = augment_bone_lengths(joints, rng, BoneConfig())
        lengths = bone_lengths(out)
        assert np.allclose(lengths, lengths[0], atol=1e-6)  # rigid bones, constant over time
        heights.append(standing_height(lengths[0]))
        for p, c in BONES:
            a, b = joints[:, c] - joints[:, p], out[:, c] - out[:, p]
            cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
            assert np.all(cos > 1 - 1e-9)
        assert np.allclose(lengths[0, [1, 2, 3, 11, 12, 13]], lengths[0, [4, 5, 6, 14, 15, 16]])  # symmetric
        assert abs(out[..., 1].min() - joints[..., 1].min()) < 0.03  # feet stay near the floor
    heights = np.array(heights)
    assert heights.min() >= 1.5 - 1e-6 and heights.max() <= 2.0 + 1e-6 and np.ptp(heights) > 0.25


def test_noise_statistics():
    joints = generate_motion("walk", 10.0, seed=2)
    cam = sample_camera(joints, np.random.default_rng(0))
    uv = project(world_to_camera(joints, cam.R, cam.t), cam.K)
    cfg = NoiseConfig(outlier_prob=0.0, missing_prob=(0.0, 0.0))
    errs, confs = [], []
    for s in range(20):
        noisy, conf = corrupt_keypoints(uv, np.random.default_rng(s), cfg)
        errs.append(np.linalg.norm(noisy - uv, axis=-1))
        confs.append(conf)
    err, conf = np.concatenate(errs), np.concatenate(confs)
    assert err[:, J["r_wrist"]].std() > 1.5 * err[:, J["r_hip"]].std()
    assert np.corrcoef(err.ravel(), conf.ravel())[0, 1] < -0.3
    d = noisy - uv  # temporally correlated: consecutive errors alike
    assert np.corrcoef(d[1:, :, 0].ravel(), d[:-1, :, 0].ravel())[0, 1] > 0.2
    noisy, conf = corrupt_keypoints(uv, np.random.default_rng(0), NoiseConfig(missing_prob=(0.05, 0.05)))
    assert (conf == 0).mean() > 0.05 and np.isnan(noisy[conf == 0]).all() and np.isfinite(noisy[conf > 0]).all()


def test_detector_keypoint_offsets():
    joints = generate_motion("walk", 1.0)
    kp = detector_keypoints(joints, np.random.default_rng(0), height=1.75)
    width = lambda x: np.linalg.norm(x[:, J["l_hip"]] - x[:, J["r_hip"]], axis=-1)
    assert np.all(width(kp) > width(joints))  # COCO hips sit wider than mocap hip joints (0.12 m here)
    assert np.all((width(kp) > 2 * 0.065 * 1.75 - 1e-6) & (width(kp) < 2 * 0.095 * 1.75 + 1e-6))
    raised = (kp[:, J["l_hip"]] - joints[:, J["l_hip"]]) @ np.array([0.0, 1.0, 0.0])
    assert np.all(raised >= -1e-6)  # and higher
    np.testing.assert_allclose(kp[:, J["pelvis"]], 0.5 * (kp[:, J["l_hip"]] + kp[:, J["r_hip"]]), atol=1e-6)
    np.testing.assert_allclose(kp[:, J["thorax"]], 0.5 * (joints[:, J["l_shoulder"]] + joints[:, J["r_shoulder"]]),
                               atol=1e-6)
    assert np.all(kp[:, J["head"], 1] <= joints[:, J["head"], 1] + 1e-6)
    np.testing.assert_array_equal(kp[:, J["r_wrist"]], joints[:, J["r_wrist"]])


def make_clip(kind="walk", seconds=3.0, seed=0):
    return Clip(kind, generate_motion(kind, seconds, seed=seed), 30.0, {})


def test_windows_items():
    clips = [make_clip("walk"), make_clip("wave", 0.5)]  # 15 frames: shorter than a window
    ds = LiftingWindows(clips, 27, stride=10, seed=0)
    assert len(ds) == 7 + 1
    item = ds[len(ds) - 1]
    assert item["input"].shape == (27, 17, 3) and item["target"].shape == (27, 17, 3)
    assert item["root"].shape == (27, 3) and item["K"].shape == (3, 3) and item["image_size"].shape == (2,)
    assert all(v.dtype == np.float32 for v in item.values())
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["input"].shape == (4, 27, 17, 3)
    for i in range(len(ds)):
        item = ds[i]
        x, conf = item["input"], item["input"][..., 2]
        assert np.all(item["target"][:, 0] == 0) and np.all(item["root"][:, 2] > 0)
        assert np.all((conf >= 0) & (conf <= 1)) and np.all(x[conf == 0][:, :2] == 0)
        # the input is roughly the projection of root + target (noise is a few percent of the size)
        truth = (item["target"] + item["root"][:, None])
        xy = truth[..., :2] / truth[..., 2:]
        seen = conf > 0
        assert np.median(np.abs(x[..., :2][seen] - xy[seen])) < 0.03
        assert np.isfinite(x).all()


def test_windows_deterministic_mode():
    clips = [make_clip("walk"), make_clip("sit", 5.0)]
    a = LiftingWindows(clips, 27, stride=9, seed=5, augment=False, deterministic=True)
    b = LiftingWindows(clips, 27, stride=9, seed=5, augment=False, deterministic=True)
    for i in (0, 3, len(a) - 1):
        for k in a[i]:
            np.testing.assert_array_equal(a[i][k], b[i][k])
    assert not np.array_equal(a[0]["input"], a[1]["input"])
    train = LiftingWindows(clips, 27, stride=9, seed=5, augment=True)
    assert not np.array_equal(train[0]["input"], train[0]["input"])  # fresh camera and noise each time
    per_frame = clip_windows(clips[0], 27)
    assert len(per_frame) == clips[0].joints.shape[0]
    np.testing.assert_array_equal(per_frame[0]["target"][:13], per_frame[0]["target"][13:14].repeat(13, 0))  # edge padding


def test_h36m_loader_on_synthetic_files(tmp_path):
    rng = np.random.default_rng(0)
    positions_3d = {s: {"Walking 1": rng.normal(size=(10, 32, 3)).astype(np.float32)} for s in ("S1", "S9")}
    positions_3d["S1"]["Sitting"] = rng.normal(size=(5, 32, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", positions_3d=positions_3d)
    positions_2d = {"S9": {"Walking 1": [rng.uniform(0, 1000, (10, 17, 2)) for _ in range(4)]}}
    metadata = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    np.savez_compressed(tmp_path / "data_2d_h36m_cpn.npz", positions_2d=positions_2d, metadata=metadata)

    clips = load_h36m_3d(tmp_path / "data_3d_h36m.npz")
    assert [c.name for c in clips] == ["S1/Sitting", "S1/Walking 1", "S9/Walking 1"]
    raw = positions_3d["S9"]["Walking 1"]
    np.testing.assert_allclose(clips[2].joints[:, 8], raw[:, 13][:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)  # Z up -> Y up
    assert clips[2].joints.shape == (10, 17, 3) and clips[2].joints.dtype == np.float32
    assert [c.name for c in load_h36m_3d(tmp_path / "data_3d_h36m.npz", subjects=TEST_SUBJECTS)] == ["S9/Walking 1"]
    pos, meta = load_h36m_2d(tmp_path / "data_2d_h36m_cpn.npz")
    assert meta["num_joints"] == 17 and len(pos["S9"]["Walking 1"]) == 4
    K, size = camera_intrinsics(0)
    assert pixels_to_normalized(pos["S9"]["Walking 1"][0], K).shape == (10, 17, 2) and size == (1000, 1002)


@pytest.mark.parametrize("kind", KINDS)
def test_procedural_motions(kind):
    x = generate_motion(kind, 4.0, seed=1, height=1.8, start=(1.0, 0.0, -2.0), heading=0.5)
    assert x.shape == (120, 17, 3) and x.dtype == np.float32 and np.isfinite(x).all()
    lengths = np.stack([np.linalg.norm(x[:, c] - x[:, p], axis=-1) for p, c in BONES], -1)
    assert np.allclose(lengths, lengths[0], atol=1e-4)
    thigh, shin = lengths[0, 1], lengths[0, 2]
    assert 0.35 < thigh < 0.55 and 0.35 < shin < 0.55
    feet = x[:, [J["r_ankle"], J["l_ankle"]], 1].min(1)
    assert np.all(np.abs(feet - 0.08 * 1.8 / 1.75) < 0.02)  # the lower foot on the floor
    assert 1.55 < x[:, J["head"], 1].max() < 2.1
    if kind == "walk":
        travelled = np.linalg.norm(x[-1, 0, [0, 2]] - x[0, 0, [0, 2]])
        assert 3.0 < travelled < 7.0
