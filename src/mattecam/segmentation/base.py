"""The segmentation contract: a BGR frame in, a soft person mask at model resolution out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.frame import Image
from mattecam.imaging import shrink

Alpha = NDArray[np.float32]
"""A soft matte: float32 person probability in [0, 1], shape (height, width)."""


class Segmenter(ABC):
    """Finds the person in a frame.

    Called from the processing thread only. ``close()`` may be called more than once.
    """

    #: (width, height) of the model input; the mask from :meth:`run` has this size.
    input_size: tuple[int, int]

    def preprocess(self, image: Image) -> NDArray[np.float32]:
        """Resize a full BGR frame to the model input: RGB float32 in [0, 1], (1, h, w, 3).

        The frame is stretched, not cropped, so the mask maps back to the whole frame.
        """
        w, h = self.input_size
        return self.tensor(shrink(image, w, h))

    def tensor(self, small: Image) -> NDArray[np.float32]:
        """The model input from a BGR frame already at the model's input size."""
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * (1.0 / 255.0))[np.newaxis]

    @abstractmethod
    def run(self, tensor: NDArray[np.float32]) -> Alpha:
        """Run the model on a tensor from :meth:`preprocess`; returns a soft mask (h, w)."""

    def infer(self, image: Image) -> Alpha:
        """Soft person mask of a BGR frame, at the model's input resolution."""
        return self.run(self.preprocess(image))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
