"""Detector layouts -> H36M-17: direct joints land unchanged, synthesised joints follow the documented rules."""
import numpy as np
import pytest

from posemoe_ros.pipeline.layouts import HEAD_RAISE, LAYOUTS, LayoutError, to_h36m
from posemoe_ros.skeleton import JOINT_INDEX as J, JOINT_NAMES

# Layout orders written out independently of the module under test (detector documentation).
ORDERS = {
    "coco17": ["nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
               "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"],
    "coco18": ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
               "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear"],
    "body25": ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "mid_hip",
               "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
               "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel"],
}
MEDIAPIPE = {"nose": 0, "l_eye": 2, "r_eye": 5, "l_ear": 7, "r_ear": 8, "l_shoulder": 11, "r_shoulder": 12,
             "l_elbow": 13, "r_elbow": 14, "l_wrist": 15, "r_wrist": 16, "l_hip": 23, "r_hip": 24,
             "l_knee": 25, "r_knee": 26, "l_ankle": 27, "r_ankle": 28}
LIMBS = ["r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "l_shoulder", "l_elbow", "l_wrist",
         "r_shoulder", "r_elbow", "r_wrist"]


def named_keypoints(rng, people: int) -> dict[str, np.ndarray]:
    """Random but person-like named keypoints (P,2) in pixels."""
    base = rng.uniform(100, 500, (people, 1, 2))
    names = LIMBS + ["nose", "l_eye", "r_eye", "l_ear", "r_ear", "neck"]
    pts = base + rng.normal(0, 60, (people, len(names), 2))
    return dict(zip(names, pts.transpose(1, 0, 2)))


def layout_arrays(layout, kp, people, rng):
    K = LAYOUTS[layout]
    xy = rng.uniform(0, 640, (people, K, 2))  # unused keypoints (toes, hands) get junk
    if layout == "mediapipe33":
        index = MEDIAPIPE
    else:
        index = {n: i for i, n in enumerate(ORDERS[layout])}
    for name, i in index.items():
        if name in kp:
            xy[:, i] = kp[name]
    return xy, rng.uniform(0.6, 1.0, (people, K)), index


def expected_h36m(kp):
    mid = lambda a, b: 0.5 * (kp[a] + kp[b])
    pelvis, thorax, ears = mid("l_hip", "r_hip"), mid("l_shoulder", "r_shoulder"), mid("l_ear", "r_ear")
    out = {n: kp[n] for n in LIMBS}
    out.update(pelvis=pelvis, thorax=thorax, spine=0.5 * (pelvis + thorax), neck_nose=kp["nose"],
               head=ears + HEAD_RAISE * (ears - thorax))
    return np.stack([out[n] for n in JOINT_NAMES], 1)  # (P,17,2)


@pytest.mark.parametrize("layout", ["coco17", "coco18", "body25", "mediapipe33"])
def test_layout_maps_to_documented_joints(layout):
    rng = np.random.default_rng(0)
    kp = named_keypoints(rng, 4)
    xy, conf, index = layout_arrays(layout, kp, 4, rng)
    xy17, conf17 = to_h36m(layout, xy, conf, 0.3)
    assert xy17.shape == (4, 17, 2) and conf17.shape == (4, 17)
    np.testing.assert_allclose(xy17, expected_h36m(kp), atol=1e-9)
    # confidences: a direct joint keeps its own, a synthesised one the min of its sources
    c = lambda n: conf[:, index[n]]
    np.testing.assert_allclose(conf17[:, J["l_knee"]], c("l_knee"))
    np.testing.assert_allclose(conf17[:, J["spine"]],
                               np.minimum.reduce([c("l_hip"), c("r_hip"), c("l_shoulder"), c("r_shoulder")]))
    np.testing.assert_allclose(conf17[:, J["head"]],
                               np.minimum.reduce([c("l_ear"), c("r_ear"), c("l_shoulder"), c("r_shoulder")]))


def test_h36m17_is_identity_and_single_person_is_batched():
    rng = np.random.default_rng(1)
    xy, conf = rng.normal(size=(17, 2)), rng.uniform(0.5, 1, 17)
    xy17, conf17 = to_h36m("h36m17", xy, conf, 0.3)
    np.testing.assert_array_equal(xy17[0], xy)
    np.testing.assert_array_equal(conf17[0], conf)


def test_fallbacks_eyes_for_head_and_neck_for_thorax():
    rng = np.random.default_rng(2)
    kp = named_keypoints(rng, 2)
    xy, conf, index = layout_arrays("body25", kp, 2, rng)
    conf[0, index["l_ear"]] = 0.1  # person 0: an ear below threshold -> head from the eyes
    conf[1, index["r_shoulder"]] = 0.0  # person 1: a shoulder missing -> thorax from the neck
    xy17, conf17 = to_h36m("body25", xy, conf, 0.3)
    eyes = 0.5 * (kp["l_eye"][0] + kp["r_eye"][0])
    shoulders = 0.5 * (kp["l_shoulder"][0] + kp["r_shoulder"][0])
    np.testing.assert_allclose(xy17[0, J["head"]], eyes + HEAD_RAISE * (eyes - shoulders))
    np.testing.assert_allclose(xy17[1, J["thorax"]], kp["neck"][1])
    pelvis = 0.5 * (kp["l_hip"][1] + kp["r_hip"][1])
    np.testing.assert_allclose(xy17[1, J["spine"]], 0.5 * (pelvis + kp["neck"][1]))
    assert conf17[1, J["r_shoulder"]] == 0 and conf17[1, J["head"]] == 0  # head needs both shoulders
    # coco17 has no neck: thorax is missing when a shoulder is
    xy, conf, index = layout_arrays("coco17", kp, 2, rng)
    conf[1, index["r_shoulder"]] = 0.0
    _, conf17 = to_h36m("coco17", xy, conf, 0.3)
    assert conf17[1, J["thorax"]] == 0 and conf17[1, J["spine"]] == 0 and conf17[1, J["pelvis"]] > 0


def test_low_confidence_and_nonfinite_joints_are_missing_but_finite():
    rng = np.random.default_rng(3)
    xy, conf, index = layout_arrays("coco17", named_keypoints(rng, 3), 3, rng)
    xy[0, index["l_hip"]] = np.nan
    conf[1, index["r_wrist"]] = np.nan
    conf[2, index["nose"]] = 0.29
    xy17, conf17 = to_h36m("coco17", xy, conf, 0.3)
    assert np.isfinite(xy17).all()
    for p, joints in [(0, ["l_hip", "pelvis", "spine"]), (1, ["r_wrist"]), (2, ["neck_nose"])]:
        for j in joints:
            assert conf17[p, J[j]] == 0, (p, j)
    assert (conf17[0, [J["r_hip"], J["thorax"], J["head"]]] > 0).all()
    assert (conf17 > 0).sum() == 3 * 17 - 3 - 1 - 1


def test_bad_layouts_raise():
    with pytest.raises(LayoutError, match="unknown keypoint layout 'openpose'"):
        to_h36m("openpose", np.zeros((1, 17, 2)), np.ones((1, 17)), 0.3)
    with pytest.raises(LayoutError, match="25 keypoints"):
        to_h36m("body25", np.zeros((2, 17, 2)), np.ones((2, 17)), 0.3)
    with pytest.raises(LayoutError):
        to_h36m("coco17", np.zeros((2, 17, 2)), np.ones((2, 18)), 0.3)
    assert issubclass(LayoutError, ValueError)
    assert LAYOUTS == {"coco17": 17, "h36m17": 17, "mediapipe33": 33, "body25": 25, "coco18": 18}
