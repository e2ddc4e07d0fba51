"""Frame in, full-frame matte out: framing, model and refinement together."""

from __future__ import annotations

import time

import numpy as np

from mattecam.frame import Image
from mattecam.matte.base import Matte, Refiner
from mattecam.segmentation.base import Segmenter
from mattecam.segmentation.framing import Framing, Rect, remap_matrix


class Matting:
    """Runs the model where :class:`~mattecam.segmentation.framing.Framing` says, refines
    the mask on that part of the frame and returns the matte for the whole frame (zero
    outside the crop).

    When the crop moves, the refiner's temporal state is remapped to it
    (:meth:`Refiner.reframe`), so the smoothing carries on across the move.
    Used by the live pipeline and by ``mattecam eval``, so both measure the same thing.
    """

    def __init__(self, framing: Framing | None = None) -> None:
        self.framing = framing or Framing()
        self._rect: Rect | None = None  # the crop the refiner saw last

    def reset(self) -> None:
        self.framing.reset()
        self._rect = None

    def matte(
        self,
        image: Image,
        segmenter: Segmenter,
        refiner: Refiner,
        timings: dict[str, float] | None = None,
    ) -> Matte:
        """The matte for ``image``; ``timings`` gets ``preprocess``, ``inference`` and
        ``refine`` in milliseconds."""
        framed = self.framing.segment(image, segmenter)
        t0 = time.perf_counter()
        rect = framed.rect
        if self._rect is not None and rect != self._rect:
            refiner.reframe(remap_matrix(self._rect, rect, segmenter.input_size))
        self._rect = rect
        h, w = image.shape[:2]
        x, y, cw, ch = rect
        if (cw, ch) == (w, h):
            matte = refiner.refine(framed.alpha, image, framed.small)
        else:
            matte = np.zeros((h, w), np.uint8)
            crop = image[y : y + ch, x : x + cw]
            matte[y : y + ch, x : x + cw] = refiner.refine(framed.alpha, crop, framed.small)
        if timings is not None:
            timings["preprocess"] = framed.preprocess_ms
            timings["inference"] = framed.inference_ms
            timings["refine"] = (time.perf_counter() - t0) * 1e3
        return matte
