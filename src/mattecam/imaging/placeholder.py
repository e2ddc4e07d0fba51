"""The picture shown before the first frame and while the camera is paused."""

from __future__ import annotations

import cv2
import numpy as np

from mattecam.frame import Image


def placeholder(width: int, height: int, text: str = "mattecam") -> Image:
    """A calm frame for when there is no picture yet (or the camera is paused)."""
    img = np.full((height, width, 3), (48, 40, 36), np.uint8)
    scale = max(0.4, height / 360)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 2, cv2.LINE_AA)
    return img
