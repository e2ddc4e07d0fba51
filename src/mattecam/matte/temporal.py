"""Temporal smoothing of the soft mask that follows motion instead of smearing it."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.frame import Image
from mattecam.imaging import shrink
from mattecam.imaging.yuv import Plane
from mattecam.matte.base import Matte, Refiner
from mattecam.segmentation.base import Alpha


class TemporalRefiner(Refiner):
    """Blends each mask with the previous one where nothing really changed, then hands it to
    ``inner`` for upsampling.

    At model resolution, per pixel: ``alpha = w * new + (1 - w) * previous`` with

        w = clip(floor + motion / motion_scale + ramp(|new - previous|), 0, 1)

    where ``motion`` is the absolute change of luminance (0..1) since the previous frame,
    blurred a little, and ``ramp`` rises from 0 to 1 as the mask's own change goes from
    ``change_gate`` to ``change_gate + 0.2``. A still scene gets strong smoothing (only
    ``floor`` of the new mask per frame), which removes the model's frame-to-frame flicker;
    a pixel whose picture moved, or whose mask flipped outright (someone stepped in, a
    uniform shirt slid over a uniform wall, where luminance alone shows no motion), takes
    the new mask at once, so a fast turn of the head does not lag or leave a ghost.

    Defaults were chosen with ``mattecam eval --clip`` on the ground-truth clips (see
    docs/quality.md): flicker ~30-40% lower than the raw model, IoU no worse on any clip.
    """

    def __init__(
        self,
        inner: Refiner,
        *,
        floor: float = 0.05,
        motion_scale: float = 0.2,
        change_gate: float = 0.6,
    ) -> None:
        self.inner = inner
        self.floor = floor
        self.motion_scale = motion_scale
        self.change_gate = change_gate
        self._prev_alpha: NDArray[np.float32] | None = None
        self._prev_grey: NDArray[np.float32] | None = None

    def refine(self, alpha: Alpha, frame: Image | Plane, small: Image | None = None) -> Matte:
        h, w = alpha.shape
        if small is None or small.shape[:2] != (h, w):
            small = shrink(frame, w, h)  # BGR, or already grey (a luma plane)
        grey = (small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)).astype(
            np.float32
        )
        grey *= np.float32(1.0 / 255.0)
        prev, prev_grey = self._prev_alpha, self._prev_grey
        if prev is not None and prev_grey is not None and prev.shape == alpha.shape:
            motion = cv2.GaussianBlur(cv2.absdiff(grey, prev_grey), (0, 0), 1.0)
            change = cv2.absdiff(alpha, prev)
            weight = motion * np.float32(1.0 / self.motion_scale) + np.float32(self.floor)
            weight += np.clip((change - np.float32(self.change_gate)) * np.float32(5.0), 0, 1)
            np.clip(weight, 0, 1, out=weight)
            alpha = np.asarray(prev + weight * (alpha - prev), np.float32)
        self._prev_alpha, self._prev_grey = alpha, grey
        return self.inner.refine(alpha, frame, small)

    def reset(self) -> None:
        self._prev_alpha = self._prev_grey = None
        self.inner.reset()

    def reframe(self, matrix: NDArray[np.float64]) -> None:
        """Carry the previous mask and luminance over to the new crop: what lay outside the
        old crop was background (alpha 0); its luminance repeats the old crop's edge."""
        prev, prev_grey = self._prev_alpha, self._prev_grey
        if prev is not None and prev_grey is not None:
            size = (prev.shape[1], prev.shape[0])
            self._prev_alpha = np.asarray(
                cv2.warpAffine(
                    prev,
                    matrix,
                    size,
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0.0,
                ),
                np.float32,
            )
            self._prev_grey = np.asarray(
                cv2.warpAffine(
                    prev_grey, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                ),
                np.float32,
            )
        self.inner.reframe(matrix)
