"""Root translation from reprojection and depth, depth decoding, and the REP-155 body frame."""
import numpy as np
import pytest

from posemoe_ros.geometry.body_frames import body_frame, joint_offsets_in_body, rotation_to_quaternion
from posemoe_ros.geometry.root_translation import (TORSO_DEPTH_OFFSET, TZ_RANGE, depth_to_metres, robust_torso_depth,
                                          solve_root_translation)
from posemoe_ros.skeleton import JOINT_INDEX as J, JOINT_NAMES

# A standing person facing the camera, camera optical frame (x right, y down, z forward), pelvis at 0.
# Facing the camera, the person's left is the camera's +x and the chest points to -z.
_STANDING = {
    "pelvis": (0, 0, 0), "r_hip": (-0.12, 0, 0), "r_knee": (-0.12, 0.45, 0.02), "r_ankle": (-0.12, 0.88, 0.05),
    "l_hip": (0.12, 0, 0), "l_knee": (0.12, 0.45, 0.02), "l_ankle": (0.12, 0.88, 0.05),
    "spine": (0, -0.25, -0.02), "thorax": (0, -0.5, -0.03), "neck_nose": (0, -0.62, -0.1), "head": (0, -0.72, -0.03),
    "l_shoulder": (0.18, -0.48, 0), "l_elbow": (0.22, -0.22, 0), "l_wrist": (0.24, 0.02, -0.05),
    "r_shoulder": (-0.18, -0.48, 0), "r_elbow": (-0.22, -0.22, 0), "r_wrist": (-0.24, 0.02, -0.05),
}
STANDING = np.array([_STANDING[n] for n in JOINT_NAMES], np.float64)  # (17,3)


def people(rng, n):
    """n randomly yawed standing people (P,17,3) root-relative and their roots (P,3)."""
    yaw = rng.uniform(-np.pi, np.pi, n)
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros((n, 3, 3))
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, s, 1, -s, c  # about the camera's y axis
    pose = np.einsum("pik,jk->pji", R, STANDING)
    root = np.stack([rng.uniform(-2, 2, n), rng.uniform(-0.5, 1, n), rng.uniform(2, 12, n)], -1)
    return pose, root


def project(points):
    return points[..., :2] / points[..., 2:3]


def test_exact_projections_recover_translation_batched():
    rng = np.random.default_rng(0)
    pose, root = people(rng, 6)
    T, valid = solve_root_translation(pose, project(pose + root[:, None]), rng.uniform(0.3, 1, (6, 17)))
    assert valid.all()
    np.testing.assert_allclose(T, root, atol=1e-3)


def test_pixel_noise_stays_within_centimetres():
    rng = np.random.default_rng(1)
    pose, root = people(rng, 8)
    root[:, 2] = rng.uniform(2, 5, 8)
    f = 600.0  # px; 1 px of noise
    xy = project(pose + root[:, None]) + rng.normal(0, 1.0 / f, (8, 17, 2))
    T, valid = solve_root_translation(pose, xy, np.ones((8, 17)))
    assert valid.all()
    err = np.linalg.norm(T - root, axis=-1)
    assert err.max() < 0.05, err


def test_degenerate_rows_are_nan_and_invalid_others_unaffected():
    rng = np.random.default_rng(2)
    pose, root = people(rng, 3)
    xy = project(pose + root[:, None])
    w = np.ones((3, 17))
    w[1, 2:] = 0  # two joints only
    xy[2] = np.nan  # nothing finite
    T, valid = solve_root_translation(pose, xy, w)
    assert valid.tolist() == [True, False, False]
    assert np.isnan(T[1:]).all()
    np.testing.assert_allclose(T[0], root[0], atol=1e-3)


def test_depth_hint_fixes_tz_and_tz_is_clamped():
    rng = np.random.default_rng(3)
    pose, root = people(rng, 3)
    xy = project(pose + root[:, None])
    hint = np.array([root[0, 2] + 0.5, np.nan, 80.0])
    T, valid = solve_root_translation(pose, xy, np.ones((3, 17)), hint)
    assert valid.all()
    assert T[0, 2] == pytest.approx(root[0, 2] + 0.5)
    np.testing.assert_allclose(T[1], root[1], atol=1e-3)  # NaN hint: reprojection solve
    assert T[2, 2] == TZ_RANGE[1]
    # the right depth from a hint gives the right Tx, Ty too
    T, _ = solve_root_translation(pose, xy, np.ones((3, 17)), root[:, 2])
    np.testing.assert_allclose(T, root, atol=1e-6)


def test_depth_to_metres_both_encodings():
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    out = depth_to_metres(mm, "16UC1")
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    np.testing.assert_allclose(out[[0, 1, 1], [1, 0, 1]], [1.5, 65.535, 0.25], rtol=1e-6)
    m = np.array([[0.0, 2.5], [np.nan, -1.0], [np.inf, 3.0]], np.float32)
    out = depth_to_metres(m[..., None], "32FC1")
    assert out.shape == (3, 2)
    assert np.isnan(out[[0, 1, 1, 2], [0, 0, 1, 0]]).all()
    np.testing.assert_array_equal(out[[0, 2], [1, 1]], [2.5, 3.0])
    with pytest.raises(ValueError, match="neither"):
        depth_to_metres(mm, "8UC1")
    with pytest.raises(ValueError):
        depth_to_metres(m, "16UC1")


def test_robust_torso_depth_ignores_outliers_and_invalid():
    H, W = 120, 160
    depth = np.full((H, W), 4.0, np.float32)  # background
    depth[20:100, 60:100] = 2.0  # the person
    uv = np.tile([80.0, 60.0], (17, 1))
    torso = ["pelvis", "r_hip", "l_hip", "spine", "thorax", "l_shoulder", "r_shoulder"]
    for n, (u, v) in zip(torso, [(80, 80), (70, 80), (90, 80), (80, 60), (80, 40), (99, 40), (61, 40)]):
        uv[J[n]] = (u, v)  # the shoulders sit on the silhouette's edge: part of their patches is background
    conf = np.ones(17)
    depth[58:63, 78:83] = np.nan  # a hole at the spine
    depth[79, 69] = 0.0
    d = robust_torso_depth(depth, uv, conf)
    assert d == pytest.approx(2.0 + TORSO_DEPTH_OFFSET)
    # a far outlier under one joint does not move the median
    depth[78:83, 68:73] = 30.0
    assert robust_torso_depth(depth, uv, conf) == pytest.approx(2.0 + TORSO_DEPTH_OFFSET)
    # no confident torso joint, or all samples invalid -> NaN
    assert np.isnan(robust_torso_depth(depth, uv, np.where(np.isin(np.arange(17), [J[n] for n in torso]), 0, 1)))
    assert np.isnan(robust_torso_depth(np.full((H, W), np.nan, np.float32), uv, conf))
    uv_out = uv + 1000  # off the image
    assert np.isnan(robust_torso_depth(depth, uv_out, conf))


def test_body_frame_standing_facing_camera():
    pose = STANDING + [0.3, -0.2, 3.0]
    origin, R = body_frame(pose)
    np.testing.assert_allclose(origin, 0.5 * (pose[J["l_hip"]] + pose[J["r_hip"]]))
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    spine = pose[J["thorax"]] - origin
    np.testing.assert_allclose(R[:, 2], spine / np.linalg.norm(spine), atol=1e-12)  # z up the spine
    assert R[:, 0] @ [0, 0, -1] > 0.99  # chest towards the camera (-z optical)
    assert R[:, 1] @ [1, 0, 0] > 0.99  # the person's left is the camera's right
    q = rotation_to_quaternion(R)
    assert q.shape == (4,) and np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
    offsets = joint_offsets_in_body(pose, origin, R)
    np.testing.assert_allclose(origin + offsets @ R.T, pose, atol=1e-12)  # p = origin + R p_body
    assert offsets[J["head"], 2] > 0.5 and offsets[J["l_hip"], 1] > 0.1 and offsets[J["neck_nose"], 0] > 0.05


def test_body_frame_batched_matches_single_and_is_orthonormal():
    rng = np.random.default_rng(4)
    pose, root = people(rng, 5)
    pose = pose + root[:, None] + rng.normal(0, 0.03, (5, 17, 3))
    origin, R = body_frame(pose)
    assert origin.shape == (5, 3) and R.shape == (5, 3, 3)
    np.testing.assert_allclose(np.einsum("pki,pkj->pij", R, R), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    o1, R1 = body_frame(pose[2])
    np.testing.assert_allclose(o1, origin[2])
    np.testing.assert_allclose(R1, R[2])
    q = rotation_to_quaternion(R)
    assert q.shape == (5, 4)
    assert joint_offsets_in_body(pose, origin, R).shape == (5, 17, 3)
