"""The refinement contract."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.frame import Image
from mattecam.imaging.yuv import Plane
from mattecam.segmentation.base import Alpha

Matte = NDArray[np.uint8]
"""A full-resolution matte: uint8, 255 = person, 0 = background, shape (height, width)."""


def luminance(frame: Image | Plane) -> tuple[Plane, float]:
    """A refiner's guide: the frame's luminance plane and the factor that brings it to the
    0..255 scale of a BGR image's grey (``cv2.COLOR_BGR2GRAY``, the same BT.601 weights as
    Y): 255/219 for a limited-range Y plane, 1 for the grey of a BGR image. Applying the
    factor to coefficients at low resolution costs nothing, unlike rescaling the plane."""
    if frame.ndim == 2:
        return frame, 255.0 / 219.0
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), np.uint8), 1.0


class Refiner(ABC):
    """Turns the model's soft mask into a full-resolution matte for one frame.

    Called from the processing thread only, once per frame in capture order; implementations
    may keep temporal state between calls. :meth:`reset` forgets that state (a new clip).
    """

    @abstractmethod
    def refine(self, alpha: Alpha, frame: Image | Plane, small: Image | None = None) -> Matte:
        """``alpha`` at model resolution (float32 0..1) and the frame at full resolution ->
        matte of the frame's size.

        ``frame`` is what the pipeline has: the frame's Y plane (uint8, BT.601 limited range,
        as :class:`~mattecam.matte.stage.MatteStage` passes it), or a BGR image (tests,
        callers with BGR pictures). ``small`` is the frame already shrunk to the model's
        input size as BGR (what the model saw), passed by the caller when it has it so
        refiners need not shrink the frame again.
        """

    def reset(self) -> None:  # noqa: B027 - stateless refiners need nothing
        """Forget temporal state."""

    def reframe(self, matrix: NDArray[np.float64]) -> None:
        """The model's input moved to another part of the frame (see
        :class:`~mattecam.matte.framing.Framing`): ``matrix`` (2x3, for
        ``cv2.warpAffine``) takes the previous mask's pixels to the next one's. Refiners
        with temporal state remap it; the default forgets it."""
        self.reset()
