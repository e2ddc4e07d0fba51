"""Stand-ins for the real stages, for tests about what surrounds them (``from fakes import``)."""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from mattecam.segmentation.base import Alpha, Segmenter


class FakeSegmenter(Segmenter):
    """A cheap, deterministic model: "person" = pixels brighter than ``threshold`` (the mean
    of R, G and B in [0, 1]) in what it was shown, so a test draws the person it wants (a
    bright rectangle on a dark frame) and knows the mask exactly.

    The input size defaults to the landscape model's. ``calls`` counts the runs, so tests see
    how often and (with the framing) where the model looked; ``delay`` seconds of sleep per
    run stand in for a slow model.
    """

    def __init__(
        self,
        *,
        input_size: tuple[int, int] = (256, 144),
        threshold: float = 0.5,
        delay: float = 0.0,
    ) -> None:
        self.input_size = input_size
        self.threshold = threshold
        self.delay = delay
        self.calls = 0

    def run(self, tensor: NDArray[np.float32]) -> Alpha:
        self.calls += 1
        if self.delay > 0:
            time.sleep(self.delay)
        return np.asarray(tensor[0].mean(axis=2) > self.threshold, np.float32)
