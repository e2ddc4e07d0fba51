"""The unit that travels through the pipeline: an image plus its timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from mattecam.imaging.yuv import I420

Image = NDArray[np.uint8]
"""A BGR image, shape (height, width, 3), dtype uint8, C-contiguous."""


@dataclass(slots=True)
class Frame:
    """One video frame and where it came from.

    Attributes:
        image: the pixels, and with them their layout: an :class:`~mattecam.imaging.yuv.I420`
            picture (BT.601, limited range unless it says otherwise), which is what sources
            deliver, the processing stage produces and YUV outputs write as they are; or a
            BGR array (height, width, 3), which every stage also accepts and converts
            once (``as_i420`` / ``as_bgr`` in :mod:`mattecam.imaging.yuv`).
        seq: sequence number given by the source, starting at 0 and increasing by one per
            frame read (so gaps seen downstream are drops).
        t_capture: ``time.monotonic()`` seconds when the source obtained the frame.
        pts: presentation time in seconds within the source media (files), or None.
        timings: milliseconds spent per stage on this frame, filled in as it moves along
            (``decode``, ``preprocess``, ``inference``, ``refine``, ``composite``...).
    """

    image: Image | I420
    seq: int
    t_capture: float
    pts: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        image = self.image
        if isinstance(image, np.ndarray):
            h, w = image.shape[:2]
            return w, h
        return image.size
