"""Horizontal-flip test-time augmentation."""
from posemoe_ros.skeleton import flip_pose


def flip_tta(model, x):
    """Average of model(x) and the mirrored prediction for the mirrored input, (B,T,J,3).

    Flipping the normalised image x coordinate mirrors the camera-frame x axis, so the same
    flip_pose (negate channel 0, swap left/right) maps input and output.
    """
    return 0.5 * (model(x) + flip_pose(model(flip_pose(x, x_channel=0)), x_channel=0))
