"""The debug overlay: input keypoints and the reprojected 3D skeletons drawn on the image."""
from __future__ import annotations

import cv2
import numpy as np

from posemoe_ros.geometry.camera import project
from posemoe_ros.ros.fallbacks import image_to_numpy, numpy_to_image
from posemoe_ros.skeleton import BONES


def draw_skeletons(bgr: np.ndarray, people, K: np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """Input keypoints as filled dots, reprojected 3D joints and bones as lines (same colour per id)."""
    from posemoe_ros.ros.conversions import person_colour

    out = bgr.copy()
    for p in people:
        c = person_colour(p.id)
        colour = (int(255 * c.b), int(255 * c.g), int(255 * c.r))
        reprojected = project(p.positions, K)
        for a, b in BONES:
            if np.all(np.isfinite(reprojected[[a, b]])):
                cv2.line(out, tuple(map(int, reprojected[a])), tuple(map(int, reprojected[b])), colour, 2, cv2.LINE_AA)
        for (u, v), conf in zip(p.keypoints_uv, p.confidence):
            if conf > min_confidence and np.isfinite(u) and np.isfinite(v):
                cv2.circle(out, (int(u), int(v)), 4, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(out, (int(u), int(v)), 4, colour, 1, cv2.LINE_AA)
    return out


def draw_overlay(image_msg, frame, K: np.ndarray):
    pixels = image_to_numpy(image_msg)
    if pixels.ndim == 2:
        pixels = cv2.cvtColor(pixels.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    elif image_msg.encoding == "rgb8":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    return numpy_to_image(draw_skeletons(pixels[..., :3], frame.people, K), "bgr8", image_msg.header)
