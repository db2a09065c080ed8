"""Motion-capture clips in the Human3.6M 17-joint layout, from the npz files of ../shared/data.

Each file holds, per clip k, `j3d_<k>` (F,17,3) float16 pelvis-relative joints and `root_<k>` (F,3)
float32 pelvis positions, world axes Y up, metres (see the README next to the data). No pickles.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posemoe_ros.skeleton import JOINT_NAMES


@dataclass
class Clip:
    name: str
    joints: np.ndarray  # (F, 17, 3) float32 world positions, Y up, metres
    fps: float
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def _meta(data, i: int, name: str) -> dict[str, str]:
    if "skeleton" in data.files:  # extra: subject cmu_NN / reactidle_NNN, trial, shared-body id, source repo
        return {"source": "extra", "subject": str(data["subject"][i]), "trial": str(data["trial"][i]),
                "skeleton": str(data["skeleton"][i]), "repository": str(data["source"][i])}
    if "subject" in data.files:  # CMU: subject and trial numbers
        return {"source": "cmu", "subject": str(int(data["subject"][i])), "trial": str(int(data["trial"][i]))}
    if "content" in data.files:  # Bandai: names like dataset-2_walk-turn-left_elderly_012
        # the integer content/style ids are per dataset, so the readable names come from the clip name
        dataset, content, style, take = (name.split("_") + ["", "", "", ""])[:4]
        return {"source": "bandai", "dataset": dataset, "content": content, "style": style, "take": take,
                "content_id": str(int(data["content"][i])), "style_id": str(int(data["style"][i]))}
    return {"source": Path(name).stem}


def load_clips(path) -> list[Clip]:
    """All clips of one npz file, in file order (world positions = root + j3d, float32)."""
    with np.load(path) as data:  # allow_pickle stays False: these files hold plain arrays
        names = [str(k) for k in data["keys"]]
        if tuple(str(n) for n in data["joint_names"]) != JOINT_NAMES:
            raise ValueError(f"{path}: joint order differs from skeleton.JOINT_NAMES")
        fps = float(data["fps"])
        clips = []
        for i, name in enumerate(names):
            joints = data[f"j3d_{name}"].astype(np.float32) + data[f"root_{name}"].astype(np.float32)[:, None]
            clips.append(Clip(name, joints, fps, _meta(data, i, name)))
    return clips
