"""Body size: the stature of a skeleton, scaling to an assumed stature, and what it does to the root."""
import numpy as np
import pytest

from posemoe_ros.data.procedural import generate_motion
from posemoe_ros.geometry.camera import project
from posemoe_ros.geometry.stature import bone_lengths, scale_to_stature, standing_height
from posemoe_ros.pipeline.lifter import Lifter, LifterConfig, ModelLoadError
from posemoe_ros.skeleton import BONES
from test_lift_node import K, synthetic_person


@pytest.mark.parametrize("height", [1.5, 1.75, 2.0])
def test_stature_of_a_skeleton_matches_its_height_in_any_pose(height):
    for kind in ("walk", "sit", "reach"):  # bone lengths, not extent: sitting keeps the stature
        joints = generate_motion(kind, 1.0, seed=1, height=height).astype(np.float64)
        assert standing_height(bone_lengths(joints)) == pytest.approx(np.full(len(joints), height), rel=0.03)


def test_scale_to_stature_sets_the_stature_and_keeps_root_and_bone_directions():
    world = generate_motion("walk", 1.0, seed=2).astype(np.float64)
    pose = (world - world[:, :1]).astype(np.float32)  # (F,17,3) root-relative
    out = scale_to_stature(pose, 1.62)
    assert out.dtype == np.float32 and out.shape == pose.shape
    assert np.allclose(standing_height(bone_lengths(out.astype(np.float64))), 1.62, atol=1e-5)
    assert np.all(out[:, 0] == 0)
    for p, c in BONES:
        a, b = pose[:, c] - pose[:, p], out[:, c] - out[:, p]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert np.all(cos > 1 - 1e-5)

    bad = pose[:3].copy()
    bad[0, 5] = np.nan      # a NaN joint: left for the root solve to refuse
    bad[1] = 0.0            # a collapsed skeleton: nothing to scale
    out = scale_to_stature(bad, 1.8)
    assert np.isnan(out[0, 5]).all() and np.array_equal(out[1], bad[1])
    assert standing_height(bone_lengths(out[2].astype(np.float64))) == pytest.approx(1.8, abs=1e-5)


def _root_errors(lifter, truth):
    uv = project(truth, K)
    errors, statures = [], []
    for i in range(len(truth)):
        (person,) = lifter.process(i * 33_333_333, "h36m17", ["1"], uv[i:i + 1], np.full((1, 17), 0.9), K,
                                   np.zeros(5)).people
        errors.append(np.linalg.norm(person.root - truth[i, 0]))
        statures.append(standing_height(bone_lengths((person.positions - person.root).astype(np.float64))))
    return np.array(errors), np.array(statures)


def test_body_height_sets_the_lifted_size_and_the_monocular_root_depth():
    truth = synthetic_person()  # a 1.75 m walker, 4-6.5 m away
    true_stature = float(np.median(standing_height(bone_lengths(truth.astype(np.float64)))))
    results = {h: _root_errors(Lifter.from_weights(None, LifterConfig(body_height=h)), truth)
               for h in (0.0, 1.70, true_stature)}
    for h in (1.70, true_stature):
        assert np.allclose(results[h][1], h, atol=1e-4)  # every frame, exactly the assumed stature
    own = results[0.0][1]  # the model's own size follows the 2D, not the parameter
    assert own.std() > 1e-3 and not np.allclose(own, true_stature, atol=0.01)
    # The closer the assumed height to the person's, the closer the root: error ~ height gap x distance
    # (plus a few % from the body's proportions, which the model does not get exactly).
    mean = {h: errors.mean() for h, (errors, _) in results.items()}
    assert mean[true_stature] < 0.15 and mean[true_stature] < mean[1.70], mean
    assert results[true_stature][0].max() < 0.3


def test_a_body_height_no_person_has_is_refused():
    with pytest.raises(ModelLoadError, match="body_height"):
        Lifter.from_weights(None, LifterConfig(body_height=0.1))
    lifter = Lifter.from_weights(None, LifterConfig())
    with pytest.raises(ValueError, match="body_height"):
        lifter.update_config(LifterConfig(body_height=3.0))
    assert lifter.config.body_height == 1.70
