"""2D keypoint layouts of common detectors -> the model's H36M-17 joints (skeleton.JOINT_NAMES).

Every layout is reduced to a linear map: each H36M joint is a fixed weighted sum of the layout's
keypoints (its "sources"), so one einsum maps all people at once. Joints a layout lacks are
synthesised by these rules (the data pipeline simulates the very same rules at training time,
see data/detector_noise.py; change them together):

    pelvis    = mid-hip                 (l_hip + r_hip) / 2
    thorax    = mid-shoulder            (l_shoulder + r_shoulder) / 2
                (layouts with a neck keypoint, body25 and coco18, use it only as a fallback when a
                shoulder is missing: mid-shoulder is what the model saw in training)
    spine     = mid(pelvis, thorax)     (l_hip + r_hip + l_shoulder + r_shoulder) / 4
    neck_nose = nose
    head      = mid-ears moved away from the shoulders along the neck axis by HEAD_RAISE times the
                mid-shoulder-to-mid-ears distance:
                    head = ears + HEAD_RAISE * (ears - shoulders),  ears = mid-ears, shoulders = mid-shoulder
                with HEAD_RAISE = 0.5; if an ear is missing, the same rule with mid-eyes instead of mid-ears.
                Using the neck axis rather than image "up" keeps the rule right for tilted or lying people.

A synthesised joint's confidence is the minimum of its sources'. Any source below `min_confidence`
(or non-finite) makes the joint missing: conf 0, xy finite (the source average with missing sources
read as 0; callers zero the xy of conf-0 joints, per the model input contract).
"""
import numpy as np

from posemoe_ros.skeleton import JOINT_NAMES, NUM_JOINTS

HEAD_RAISE = 0.5  # head = mid-ears + HEAD_RAISE * (mid-ears - mid-shoulder)


class LayoutError(ValueError):
    """A keypoint layout that cannot be mapped (unknown name or wrong keypoint count)."""


# Named keypoints of each detector layout, in the detector's order.
_COCO17 = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
           "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")
_COCO18 = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
           "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
_BODY25 = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "mid_hip",
           "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
           "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel")
_MEDIAPIPE33 = ("nose", "l_eye_inner", "l_eye", "l_eye_outer", "r_eye_inner", "r_eye", "r_eye_outer", "l_ear",
                "r_ear", "mouth_left", "mouth_right", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
                "l_wrist", "r_wrist", "l_pinky", "r_pinky", "l_index", "r_index", "l_thumb", "r_thumb",
                "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "l_heel", "r_heel",
                "l_foot_index", "r_foot_index")
_NAMES = {"coco17": _COCO17, "h36m17": JOINT_NAMES, "mediapipe33": _MEDIAPIPE33, "body25": _BODY25,
          "coco18": _COCO18}

LAYOUTS: dict[str, int] = {name: len(names) for name, names in _NAMES.items()}


def _body_recipes(has_neck: bool) -> list[dict[str, list[dict[str, float]]]]:
    """Per H36M joint, alternative recipes {keypoint: weight}, first usable one wins."""
    hips = {"l_hip": 0.5, "r_hip": 0.5}
    shoulders = {"l_shoulder": 0.5, "r_shoulder": 0.5}
    half = lambda d, w: {k: v * w for k, v in d.items()}

    def head(a: str, b: str) -> dict[str, float]:  # mid(a, b) + HEAD_RAISE * (mid(a, b) - mid-shoulder)
        return {a: 0.5 * (1 + HEAD_RAISE), b: 0.5 * (1 + HEAD_RAISE), **half(shoulders, -HEAD_RAISE)}

    thorax = [shoulders] + ([{"neck": 1.0}] if has_neck else [])
    spine = [{**half(hips, 0.5), **half(s, 0.5)} for s in thorax]
    recipes = {name: [{name: 1.0}] for name in JOINT_NAMES if name in _COCO17}
    recipes.update(pelvis=[hips], thorax=thorax, spine=spine, neck_nose=[{"nose": 1.0}],
                   head=[head("l_ear", "r_ear"), head("l_eye", "r_eye")])
    return [recipes[name] for name in JOINT_NAMES]


def _build(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """-> weights (R,17,K) and source masks (R,17,K) for R alternative recipe levels."""
    index = {n: i for i, n in enumerate(names)}
    recipes = ([[{n: 1.0}] for n in JOINT_NAMES] if names is JOINT_NAMES else _body_recipes("neck" in index))
    levels = max(len(r) for r in recipes)
    weights = np.zeros((levels, NUM_JOINTS, len(names)))
    for j, alternatives in enumerate(recipes):
        for level in range(levels):
            recipe = alternatives[min(level, len(alternatives) - 1)]  # short lists repeat their last recipe
            for name, w in recipe.items():
                weights[level, j, index[name]] = w
    return weights, weights != 0


_MAPS = {name: _build(names) for name, names in _NAMES.items()}


def to_h36m(layout: str, xy: np.ndarray, conf: np.ndarray, min_confidence: float = 0.0):
    """Keypoints of `layout` -> H36M-17 joints, vectorised over people.

    xy (P,K,2) or (K,2), conf (P,K) or (K,) -> xy17 (P,17,2), conf17 (P,17) (always batched).
    Joints with a source below min_confidence or non-finite get conf 0 (xy stays finite).
    """
    if layout not in _MAPS:
        raise LayoutError(f"unknown keypoint layout '{layout}'; known layouts: {', '.join(LAYOUTS)}")
    weights, sources = _MAPS[layout]  # (R,17,K)
    xy = np.asarray(xy, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    if xy.ndim == 2:
        xy, conf = xy[None], conf[None]
    K = LAYOUTS[layout]
    if xy.ndim != 3 or xy.shape[1:] != (K, 2) or conf.shape != xy.shape[:2]:
        raise LayoutError(f"layout '{layout}' has {K} keypoints; got xy {xy.shape[-2] if xy.ndim >= 2 else '?'} "
                          f"keypoints (shape {xy.shape}) and conf shape {conf.shape}")
    finite = np.isfinite(xy).all(-1) & np.isfinite(conf)  # (P,K)
    conf = np.where(finite, conf, 0.0)
    usable = conf >= min_confidence if min_confidence > 0 else conf > 0  # (P,K)
    xy = np.where(finite[..., None], xy, 0.0)

    out_xy = np.einsum("rjk,pkc->rpjc", weights, xy)  # (R,P,17,2)
    src_conf = np.where(sources[:, None], conf[None, :, None, :], np.inf).min(-1)  # (R,P,17)
    src_ok = ~(sources[:, None] & ~usable[None, :, None, :]).any(-1)  # (R,P,17) every source usable
    level = np.where(src_ok.any(0), src_ok.argmax(0), 0)  # (P,17) first usable recipe
    P = xy.shape[0]
    p, j = np.arange(P)[:, None], np.arange(NUM_JOINTS)[None, :]
    xy17 = out_xy[level, p, j]  # (P,17,2)
    conf17 = np.where(src_ok[level, p, j], src_conf[level, p, j], 0.0)
    return xy17, np.clip(conf17, 0.0, 1.0)
