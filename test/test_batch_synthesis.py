"""Vectorised batch synthesis (data/batch_synthesis.py): geometry, flips, the canonical view, and the
same distributions as the per-window LiftingWindows it replaces in training."""
from pathlib import Path

import numpy as np
import pytest

from posemoe_ros.data.batch_synthesis import SequenceSampler, evaluation_sequences, synthesize
from posemoe_ros.data.bone_length import BoneConfig
from posemoe_ros.data.detector_noise import NoiseConfig
from posemoe_ros.data.mocap import Clip
from posemoe_ros.data.procedural import KINDS, generate_motion
from posemoe_ros.data.virtual_camera import CameraConfig
from posemoe_ros.data.windows import LiftingWindows
from posemoe_ros.geometry.camera import pixels_to_normalized
from posemoe_ros.geometry.optical_axis import rotate_normalized, rotation_to_axis
from posemoe_ros.geometry.stature import bone_lengths, standing_height
from posemoe_ros.skeleton import BONES, LEFT, RIGHT, flip_pose

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLEAN = NoiseConfig(keypoint_offsets=False, jitter=(0.0, 0.0), outlier_prob=0.0, missing_prob=(0.0, 0.0),
                    conf_noise=0.0)
LIMBS = [2, 3, 5, 6, 12, 13, 15, 16]  # knees, ankles, elbows, wrists: no systematic detector offset


@pytest.fixture(scope="module")
def clips():
    return [Clip(k, generate_motion(k, 4.0, seed=i, height=1.6 + 0.05 * i), 30.0, {}) for i, k in enumerate(KINDS)]


def project(points, K):
    """Pixels (B,L,17,2) of camera-frame points (B,L,17,3) with per-sequence K (B,3,3)."""
    f, c = K[:, None, None, [0, 1], [0, 1]], K[:, None, None, [0, 1], [2, 2]]
    return points[..., :2] / points[..., 2:] * f + c


def test_shapes_dtypes_and_input_convention(clips):
    batch = SequenceSampler(clips, 27, seed=0).sample(16)
    shapes = {"input": (16, 27, 17, 3), "target": (16, 27, 17, 3), "root": (16, 27, 3), "K": (16, 3, 3),
              "image_size": (16, 2), "R": (16, 27, 3, 3)}
    assert {k: v.shape for k, v in batch.items()} == shapes
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in batch.values())
    conf = batch["input"][..., 2]
    assert np.all((conf >= 0) & (conf <= 1)) and (conf == 0).any() and (conf > 0.5).mean() > 0.5
    assert np.all(batch["input"][..., :2][conf == 0] == 0)
    assert np.all(batch["target"][:, :, 0] == 0) and np.all(batch["root"][..., 2] > 0.4)


def test_noise_free_inputs_are_the_projection_inside_the_margin(clips):
    cfg = CameraConfig()
    batch = SequenceSampler(clips, 27, seed=1, noise=CLEAN, flip_prob=0.0, canonical_view=False).sample(64)
    truth = batch["target"] + batch["root"][:, :, None]                       # camera frame
    uv = project(truth.astype(np.float64), batch["K"].astype(np.float64))
    w, h = batch["image_size"][:, None, None, 0], batch["image_size"][:, None, None, 1]
    tol = 1e-3  # px (float32)
    assert np.all((uv[..., 0] >= cfg.margin * w - tol) & (uv[..., 0] <= (1 - cfg.margin) * w + tol))
    assert np.all((uv[..., 1] >= cfg.margin * h - tol) & (uv[..., 1] <= (1 - cfg.margin) * h + tol))
    assert batch["input"][..., 2].min() > 0.8
    np.testing.assert_allclose(batch["input"][..., :2], truth[..., :2] / truth[..., 2:], atol=1e-5)
    # the input is what the node computes from the pixels with K
    np.testing.assert_allclose(pixels_to_normalized(uv[0], batch["K"][0]), batch["input"][0, ..., :2], atol=1e-5)
    focal = batch["K"][:, 0, 0]
    assert np.all(focal <= cfg.focal_range[1]) and np.mean(focal >= cfg.focal_range[0]) > 0.9


def test_canonical_view_is_the_nodes_rotation(clips):
    kw = dict(seed=2, flip_prob=0.0)
    plain = SequenceSampler(clips, 27, canonical_view=False, **kw).sample(32)
    canon = SequenceSampler(clips, 27, canonical_view=True, **kw).sample(32)  # same draws, then turned
    np.testing.assert_array_equal(plain["root"], canon["root"])
    xy, conf = plain["input"][..., :2].astype(np.float64), plain["input"][..., 2:].astype(np.float64)
    centre = ((xy * conf).sum(-2) / conf.sum(-2)).reshape(-1, 2)              # per frame
    R = rotation_to_axis(centre)                                               # optical_axis, as the node
    np.testing.assert_allclose(canon["R"].reshape(-1, 3, 3), R, atol=1e-6)
    R32 = canon["R"].reshape(-1, 3, 3).astype(np.float64)
    assert np.abs(rotate_normalized(centre[:, None], R32)).max() < 1e-6      # the centre's ray on the axis
    seen = conf[..., 0] > 0
    turned = rotate_normalized(xy.reshape(-1, 17, 2), R).reshape(xy.shape)
    np.testing.assert_allclose(canon["input"][..., :2][seen], turned[seen], atol=1e-5)
    assert np.all(canon["input"][..., :2][~seen] == 0)
    np.testing.assert_array_equal(canon["input"][..., 2], plain["input"][..., 2])
    # targets turned rigidly: p' = R p, bone lengths kept
    np.testing.assert_allclose(canon["target"], np.einsum("blij,blkj->blki", canon["R"], plain["target"]), atol=1e-5)
    np.testing.assert_allclose(bone_lengths(canon["target"]), bone_lengths(plain["target"]), atol=1e-5)
    # the person now sits near the image centre (off by perspective only)
    new = canon["input"][..., :2] * canon["input"][..., 2:]
    assert np.abs(new.sum(-2) / canon["input"][..., 2:].sum(-2)).max() < 0.05 < np.abs(centre).max()


def test_reprojection_in_the_canonical_view(clips):
    batch = SequenceSampler(clips, 27, seed=3, noise=CLEAN, flip_prob=0.5).sample(32)
    root = np.einsum("blij,blj->bli", batch["R"], batch["root"])                  # pelvis in the turned view
    truth = batch["target"] + root[:, :, None]
    np.testing.assert_allclose(batch["input"][..., :2], truth[..., :2] / truth[..., 2:], atol=2e-5)


@pytest.mark.parametrize("canonical", [False, True])
def test_flip_mirrors_input_target_and_root(clips, canonical):
    kw = dict(seed=4, canonical_view=canonical)
    plain = SequenceSampler(clips, 27, flip_prob=0.0, **kw).sample(16)
    flipped = SequenceSampler(clips, 27, flip_prob=1.0, **kw).sample(16)
    for key in ("input", "target"):
        np.testing.assert_allclose(flipped[key], flip_pose(plain[key]), atol=1e-5)
    np.testing.assert_allclose(flipped["input"][..., list(LEFT), 2], plain["input"][..., list(RIGHT), 2])
    np.testing.assert_allclose(flipped["root"], plain["root"] * [-1, 1, 1], atol=1e-6)
    w = plain["image_size"][:, 0]
    np.testing.assert_allclose(flipped["K"][:, 0, 2], w - plain["K"][:, 0, 2], atol=1e-3)
    mixed = SequenceSampler(clips, 27, flip_prob=0.5, **kw).sample(64)
    left_x = mixed["target"][..., 4, 0] - mixed["target"][..., 1, 0]              # l_hip - r_hip, camera x
    assert 0 < (np.median(left_x, 1) > 0).mean() < 1                             # some mirrored, some not


def test_determinism_and_fresh_draws(clips):
    a, b = SequenceSampler(clips, 27, seed=7), SequenceSampler(clips, 27, seed=7)
    first, again = a.sample(8), b.sample(8)
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    assert not np.array_equal(a.sample(8)["input"], first["input"])
    assert not np.array_equal(SequenceSampler(clips, 27, seed=8).sample(8)["input"], first["input"])


def test_bone_augmentation_statures(clips):
    cfg = BoneConfig()
    batch = SequenceSampler(clips, 27, seed=5, bones=cfg).sample(200)
    lengths = bone_lengths(batch["target"].astype(np.float64))                    # (B,L,17)
    assert np.allclose(lengths, lengths[:, :1], atol=1e-4)                        # rigid over time
    stature = standing_height(lengths[:, 0])
    assert stature.min() >= cfg.height_range[0] - 1e-3 and stature.max() <= cfg.height_range[1] + 1e-3
    assert np.ptp(stature) > 0.35
    plain = SequenceSampler(clips, 27, seed=5, augment=False).sample(50)
    own = {round(float(standing_height(bone_lengths(c.joints[0].astype(np.float64)))), 3) for c in clips}
    assert {round(float(s), 3) for s in standing_height(bone_lengths(plain["target"][:, 0].astype(np.float64)))} <= own


def test_short_clips_are_edge_replicated():
    clip = Clip("short", generate_motion("wave", 10 / 30), 30.0, {})
    batch = SequenceSampler([clip], 27, seed=0, noise=CLEAN, flip_prob=0.0, canonical_view=False,
                            augment=False).sample(2)
    t = batch["target"]                             # start -((27 - 10) // 2) = -8: frames 0..8 show frame 0
    np.testing.assert_allclose(t[:, :9], np.repeat(t[:, 8:9], 9, 1), atol=1e-6)
    np.testing.assert_allclose(t[:, 18:], np.repeat(t[:, 17:18], 9, 1), atol=1e-6)
    assert not np.allclose(t[:, 8], t[:, 17], atol=1e-3)


def test_evaluation_sequences_whole_clip(clips):
    clip = clips[0]
    a, b, c = evaluation_sequences(clip, 3), evaluation_sequences(clip, 3), evaluation_sequences(clip, 4)
    assert a["input"].shape == (1, clip.num_frames, 17, 3) and a["K"].shape == (1, 3, 3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["input"], c["input"])
    # no augmentation, no flip: the clip's own bones, left stays left (x of l_hip - r_hip has the sign of the
    # clean view); one camera for every frame
    np.testing.assert_allclose(bone_lengths(a["target"][0]), bone_lengths(clip.joints), atol=1e-4)
    clean = evaluation_sequences(clip, 3, noise=CLEAN, canonical_view=False)
    world = clip.joints - clip.joints[:, :1]
    R = np.linalg.lstsq(world.reshape(-1, 3), clean["target"][0].reshape(-1, 3), rcond=None)[0].T
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.isclose(np.linalg.det(R), 1.0, atol=1e-4)


def test_same_distributions_as_lifting_windows(clips):
    n = 300
    old = LiftingWindows(clips, 27, seed=0, deterministic=True)
    items = [old[i] for i in np.linspace(0, len(old) - 1, n).round().astype(int)]
    stack = lambda k: np.stack([it[k] for it in items])
    ref = {k: stack(k) for k in ("input", "target", "root", "K", "image_size")}
    new = SequenceSampler(clips, 27, seed=0, flip_prob=0.0, canonical_view=False).sample(n)

    def stats(b):
        truth = b["target"] + b["root"][:, :, None]
        uv = project(truth.astype(np.float64), b["K"].astype(np.float64))
        px = (uv.max(2) - uv.min(2)).max(-1).mean(1)                              # pixel height per window
        conf = b["input"][..., 2]
        err = np.linalg.norm(b["input"][..., :2] - truth[..., :2] / truth[..., 2:], axis=-1)
        rel = (err * b["K"][:, None, None, 0, 0] / px[:, None, None])[..., LIMBS][conf[..., LIMBS] > 0]
        stature = standing_height(bone_lengths(b["target"][:, 0].astype(np.float64)))
        return {"depth": b["root"][..., 2].mean(1), "focal": b["K"][:, 0, 0], "px": px, "stature": stature,
                "width": b["image_size"][:, 0], "missing": (conf == 0).mean(), "conf": conf[conf > 0],
                "noise": rel}
    s_old, s_new = stats(ref), stats(new)
    tol = {"depth": 0.4, "focal": 70.0, "px": 40.0, "stature": 0.03, "width": 120.0}
    for key, t in tol.items():
        for q in (0.25, 0.5, 0.75):
            a, b = np.quantile(s_old[key], q), np.quantile(s_new[key], q)
            assert abs(a - b) < t * (1.5 if q != 0.5 else 1.0), (key, q, a, b)
    assert abs(s_old["missing"] - s_new["missing"]) < 0.01
    assert abs(np.median(s_old["conf"]) - np.median(s_new["conf"])) < 0.03
    assert abs(np.median(s_old["noise"]) - np.median(s_new["noise"])) < 0.25 * np.median(s_old["noise"])


def test_synthesize_from_world_arrays(clips):
    world = np.stack([c.joints[:27] for c in clips])                              # (5,27,17,3)
    batch = synthesize(world, np.random.default_rng(0), augment=False, noise=CLEAN, canonical_view=False)
    np.testing.assert_allclose(bone_lengths(batch["target"]), bone_lengths(world), atol=1e-4)


@pytest.mark.skipif(not (DATA / "extra_h36m17.npz").exists(), reason="mocap data not present")
def test_real_clips():
    from posemoe_ros.data.mocap import load_clips
    clips = load_clips(DATA / "extra_h36m17.npz")
    batch = SequenceSampler(clips, 81, seed=0).sample(64)
    assert np.isfinite(batch["input"]).all() and batch["input"].shape == (64, 81, 17, 3)
    stature = standing_height(bone_lengths(batch["target"][:, 0].astype(np.float64)))
    assert np.all((stature > 1.5 - 1e-3) & (stature < 2.0 + 1e-3))
    assert (batch["input"][..., 2] == 0).mean() < 0.1


@pytest.mark.parametrize("shape", [(2, 17, 40, 27), (2, 17, 6, 243)])  # loop over frames / over sequences
def test_ar1_noise_is_stationary_with_each_sequences_coefficient(shape):
    from posemoe_ros.data.batch_synthesis import _ar1
    rho = np.linspace(0.3, 0.9, shape[2])
    x = _ar1(shape, rho, np.random.default_rng(0))
    assert x.shape == shape and abs(x.std() - 1) < 0.03 and abs(x[..., 0].std() - 1) < 0.1
    lag1 = [np.corrcoef(x[..., b, 1:].ravel(), x[..., b, :-1].ravel())[0, 1] for b in range(shape[2])]
    err = np.abs(np.array(lag1) - rho)          # sampling error of ~900 pairs per sequence: about 0.03
    assert err.mean() < 0.04 and err.max() < 0.12
