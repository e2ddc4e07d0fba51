"""Temporal smoothing of the soft mask that follows motion instead of smearing it."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.frame import Image
from mattecam.matte.base import Matte, Refiner
from mattecam.segmentation.base import Alpha, shrink


class TemporalRefiner(Refiner):
    """Blends each mask with the previous one where the picture did not change, then hands it
    to ``inner`` for upsampling.

    At model resolution, per pixel: ``alpha = w * new + (1 - w) * previous`` with
    ``w = clip(strength_floor + motion / motion_scale, 0, 1)``, where ``motion`` is the
    absolute change of luminance (0..1) since the previous frame, blurred a little. A still
    background and a still person get the full smoothing (``1 - strength_floor`` of the old
    mask kept), which removes the model's frame-to-frame flicker; pixels that moved take the
    new mask at once, so a fast turn of the head does not lag or leave a ghost.
    """

    def __init__(self, inner: Refiner, *, floor: float = 0.15, motion_scale: float = 0.2) -> None:
        self.inner = inner
        self.floor = floor
        self.motion_scale = motion_scale
        self._prev_alpha: NDArray[np.float32] | None = None
        self._prev_grey: NDArray[np.float32] | None = None

    def refine(self, alpha: Alpha, frame: Image, small: Image | None = None) -> Matte:
        h, w = alpha.shape
        if small is None or small.shape[:2] != (h, w):
            small = shrink(frame, w, h)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grey *= np.float32(1.0 / 255.0)
        prev, prev_grey = self._prev_alpha, self._prev_grey
        if prev is not None and prev_grey is not None and prev.shape == alpha.shape:
            motion = cv2.GaussianBlur(cv2.absdiff(grey, prev_grey), (0, 0), 1.0)
            weight = np.clip(self.floor + motion * np.float32(1.0 / self.motion_scale), 0, 1)
            alpha = np.asarray(prev + weight * (alpha - prev), np.float32)
        self._prev_alpha, self._prev_grey = alpha, grey
        return self.inner.refine(alpha, frame, small)

    def reset(self) -> None:
        self._prev_alpha = self._prev_grey = None
        self.inner.reset()
