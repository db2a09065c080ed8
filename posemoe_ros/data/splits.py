"""Train / val / test splits of the motion-capture clips (fixed, documented in docs/data.md).

test: CMU subjects never seen in training (other people, skeletons and capture set-up than Bandai).
val: held-out Bandai styles (the whole style, every content), one held-out CMU subject and, with the
extra file, one ReActIdle person and one extra CMU subject; used for model selection. train:
everything else. Never tune anything on test.
"""
from posemoe_ros.data.mocap import Clip, load_clips

TEST_CMU_SUBJECTS = ("5", "7", "16", "32")       # incl. the two shortest-legged subjects (5, 32)
VAL_CMU_SUBJECTS = ("8",)
VAL_BANDAI_STYLES = ("dataset-1:tired", "dataset-2:elderly")  # dataset:style
# extra_h36m17.npz subjects held out for val: one ReActIdle person (own FreeMoCap skeleton, its one
# session) and one CMU subject (indian dance: motions only, every extra CMU clip has the same Daz body)
VAL_EXTRA_SUBJECTS = ("reactidle_009", "cmu_94")


def _extra_cmu_number(subject: str) -> str | None:
    """'cmu_03' -> '3' (CMU numbering as in TEST_CMU_SUBJECTS); None for other sources."""
    return str(int(subject[4:])) if subject.startswith("cmu_") else None


def make_splits(bandai_path, cmu_path, test_subjects=TEST_CMU_SUBJECTS, val_subjects=VAL_CMU_SUBJECTS,
                val_styles=VAL_BANDAI_STYLES, extra_path=None,
                val_extra_subjects=VAL_EXTRA_SUBJECTS) -> dict[str, list[Clip]]:
    """{"train", "val", "test"}: lists of Clip, deterministic (file order).

    extra_path: optional extra_h36m17.npz; its clips go to train except `val_extra_subjects` (val).
    Test stays the CMU test subjects of cmu_path: an extra clip of a test subject (none today) is
    dropped, so no test person reaches training or validation."""
    if set(test_subjects) & set(val_subjects):
        raise ValueError("a CMU subject cannot be in both val and test")
    splits = {"train": [], "val": [], "test": []}
    for clip in load_clips(bandai_path):
        held_out = f"{clip.meta['dataset']}:{clip.meta['style']}" in val_styles
        splits["val" if held_out else "train"].append(clip)
    for clip in load_clips(cmu_path):
        subject = clip.meta["subject"]
        splits["test" if subject in test_subjects else "val" if subject in val_subjects else "train"].append(clip)
    if extra_path is not None:
        for clip in load_clips(extra_path):
            subject = clip.meta["subject"]
            if _extra_cmu_number(subject) in test_subjects:
                continue
            splits["val" if subject in val_extra_subjects else "train"].append(clip)
    return splits
