"""Metrics against answers built by hand: offsets, similarity transforms, velocities, thresholds."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from posemoe_ros import metrics


def random_poses(n=8, j=17, seed=0):
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, j, 3))


def test_uniform_offset_gives_mpjpe_of_offset():
    target = random_poses()
    pred = target + np.array([0.006, 0.0, 0.008])          # |offset| = 10 mm
    assert metrics.mpjpe(pred, target) == pytest.approx(0.010, abs=1e-9)
    assert metrics.p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-9)   # translation aligned away
    assert metrics.summarize(pred, target)["mpjpe_mm"] == pytest.approx(10.0, abs=1e-6)


def test_similarity_copy_has_zero_p_mpjpe_but_not_mpjpe():
    target = random_poses()
    rots = Rotation.random(len(target), random_state=1).as_matrix()
    pred = 1.3 * np.einsum("nij,nkj->nki", rots, target) + np.array([0.1, -0.2, 0.3])
    assert metrics.mpjpe(pred, target) > 0.05
    assert metrics.p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-9)
    aligned = metrics.procrustes_align(pred, target).numpy()
    np.testing.assert_allclose(aligned, target, atol=1e-9)


def test_procrustes_never_reflects():
    target = random_poses(n=4)
    mirrored = target * np.array([-1.0, 1.0, 1.0])        # a reflection is not a similarity
    assert metrics.p_mpjpe(mirrored, target) > 0.01
    # and the result is the best *rotation*: no worse than any random rotation of the mirror
    best = metrics.p_joint_errors(mirrored, target).mean(dim=-1).numpy()
    for seed in range(5):
        r = Rotation.random(random_state=seed).as_matrix()
        worse = metrics.joint_errors(mirrored @ r.T, target).mean(dim=-1).numpy()
        assert np.all(best <= worse + 1e-9)


def test_scaled_copy_has_zero_n_mpjpe():
    target = random_poses()
    pred = 0.7 * target
    assert metrics.n_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mpjpe(pred, target) == pytest.approx(
        0.3 * np.linalg.norm(target, axis=-1).mean(), rel=1e-9)


def test_velocity_error_ignores_constant_offset_and_sees_jitter():
    target = np.cumsum(random_poses(n=10) * 0.01, axis=0)[None]        # (1, T, J, 3)
    assert metrics.mpjve(target + 0.05, target) == pytest.approx(0.0, abs=1e-12)
    jitter = target.copy()
    jitter[0, 1::2] += np.array([0.0, 0.002, 0.0])        # +2 mm on every odd frame
    assert metrics.mpjve(jitter, target) == pytest.approx(0.002, abs=1e-12)


def test_pck_and_auc_known_fractions():
    errors = np.array([0.0, 0.05, 0.1, 0.2])
    assert metrics.pck(errors) == pytest.approx(0.75)
    assert metrics.pck(errors, 0.07) == pytest.approx(0.5)
    # AUC over 0..150 mm in 5 mm steps: error 0 counts at all 31, 50 mm at 21, 100 mm at 11, 200 mm at 0
    assert metrics.auc(errors) == pytest.approx((31 + 21 + 11 + 0) / (4 * 31))
    assert metrics.auc(np.zeros(5)) == pytest.approx(1.0)


def test_per_joint_breakdown_and_torch_input():
    target = torch.zeros(3, 5, 17, 3)
    pred = target.clone()
    pred[..., 4, 0] = 0.02                                # only joint 4 is off, by 20 mm
    pj = metrics.per_joint(metrics.joint_errors(pred, target))
    assert pj.shape == (17,)
    assert pj[4] == pytest.approx(0.02) and np.delete(pj, 4).max() == 0.0
