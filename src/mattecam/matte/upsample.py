"""Plain bilinear upsampling of the soft mask (the baseline refinement)."""

from __future__ import annotations

import cv2
import numpy as np

from mattecam.frame import Image
from mattecam.imaging.yuv import Plane
from mattecam.matte.base import Matte, Refiner
from mattecam.segmentation.base import Alpha


class BilinearRefiner(Refiner):
    """Scales the soft mask to the frame size with bilinear interpolation, keeping it soft.

    The mask is quantised to uint8 at model resolution first: the full-resolution resize then
    runs on 8-bit data, which is several times cheaper than on float32.
    """

    def refine(self, alpha: Alpha, frame: Image | Plane, small: Image | None = None) -> Matte:
        h, w = frame.shape[:2]
        alpha8 = cv2.convertScaleAbs(alpha, alpha=255.0)
        return np.asarray(cv2.resize(alpha8, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)
