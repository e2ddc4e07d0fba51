"""The refinement contract."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import NDArray

from mattecam.frame import Image
from mattecam.segmentation.base import Alpha

Matte = NDArray[np.uint8]
"""A full-resolution matte: uint8, 255 = person, 0 = background, shape (height, width)."""


class Refiner(ABC):
    """Turns the model's soft mask into a full-resolution matte for one frame.

    Called from the processing thread only, once per frame in capture order; implementations
    may keep temporal state between calls. :meth:`reset` forgets that state (a new clip).
    """

    @abstractmethod
    def refine(self, alpha: Alpha, frame: Image, small: Image | None = None) -> Matte:
        """``alpha`` at model resolution (float32 0..1) and the full BGR frame -> matte.

        ``small`` is the frame already shrunk to the model's input size (what the model saw),
        passed by the caller when it has it so refiners need not shrink the frame again.
        """

    def reset(self) -> None:  # noqa: B027 - stateless refiners need nothing
        """Forget temporal state."""

    def reframe(self, matrix: NDArray[np.float64]) -> None:
        """The model's input moved to another part of the frame (see
        :class:`~mattecam.matte.framing.Framing`): ``matrix`` (2x3, for
        ``cv2.warpAffine``) takes the previous mask's pixels to the next one's. Refiners
        with temporal state remap it; the default forgets it."""
        self.reset()
