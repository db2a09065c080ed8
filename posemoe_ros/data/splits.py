"""Train / val / test splits of the motion-capture clips (fixed, documented in docs/data.md).

test: CMU subjects never seen in training (other people, skeletons and capture set-up than Bandai).
val: held-out Bandai styles (the whole style, every content) and one held-out CMU subject; used for
model selection. train: everything else. Never tune anything on test.
"""
from posemoe_ros.data.mocap import Clip, load_clips

TEST_CMU_SUBJECTS = ("5", "7", "16", "32")       # incl. the two shortest-legged subjects (5, 32)
VAL_CMU_SUBJECTS = ("8",)
VAL_BANDAI_STYLES = ("dataset-1:tired", "dataset-2:elderly")  # dataset:style


def make_splits(bandai_path, cmu_path, test_subjects=TEST_CMU_SUBJECTS, val_subjects=VAL_CMU_SUBJECTS,
                val_styles=VAL_BANDAI_STYLES, extra_path=None) -> dict[str, list[Clip]]:
    """{"train", "val", "test"}: lists of Clip, deterministic (file order)."""
    if set(test_subjects) & set(val_subjects):
        raise ValueError("a CMU subject cannot be in both val and test")
    splits = {"train": [], "val": [], "test": []}
    for clip in load_clips(bandai_path):
        held_out = f"{clip.meta['dataset']}:{clip.meta['style']}" in val_styles
        splits["val" if held_out else "train"].append(clip)
    for clip in load_clips(cmu_path):
        subject = clip.meta["subject"]
        splits["test" if subject in test_subjects else "val" if subject in val_subjects else "train"].append(clip)
    if extra_path is not None:  # other people and motions: training only (no test subject is in it)
        splits["train"].extend(load_clips(extra_path))
    return splits
