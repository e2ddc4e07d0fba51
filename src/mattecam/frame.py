"""The unit that travels through the pipeline: an image plus its timing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
"""A BGR image, shape (height, width, 3), dtype uint8, C-contiguous."""


@dataclass(slots=True)
class Frame:
    """One video frame and where it came from.

    Attributes:
        image: BGR uint8 pixels, shape (height, width, 3).
        seq: sequence number given by the source, starting at 0 and increasing by one per
            frame read (so gaps seen downstream are drops).
        t_capture: ``time.monotonic()`` seconds when the source obtained the frame.
        pts: presentation time in seconds within the source media (files), or None.
        timings: milliseconds spent per stage on this frame, filled in as it moves along
            (``decode``, ``preprocess``, ``inference``, ``refine``, ``composite``...).
    """

    image: Image
    seq: int
    t_capture: float
    pts: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        h, w = self.image.shape[:2]
        return w, h
