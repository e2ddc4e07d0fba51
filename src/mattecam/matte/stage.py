"""The matte stage: frame in, full-frame matte out (framing, model and refinement)."""

from __future__ import annotations

import time

import numpy as np

from mattecam.frame import Image
from mattecam.imaging.yuv import I420, as_i420
from mattecam.matte.base import Matte, Refiner
from mattecam.matte.framing import Framing, Rect, remap_matrix
from mattecam.segmentation.base import Segmenter


class MatteStage:
    """Owns the segmenter, the framing (where the model looks) and the refiner, and turns a
    frame into its matte: the model runs where :class:`~mattecam.matte.framing.Framing`
    says, the mask is refined on that part of the frame, and the matte covers the whole
    frame (zero outside the crop).

    When the crop moves, the refiner's temporal state is remapped to it
    (:meth:`Refiner.reframe`), so the smoothing carries on across the move. Swapping a part
    (:meth:`swap`) or a change of the picture's geometry (:meth:`reset`, e.g. a mirror
    flip) resets the state that was in the old coordinates.

    Used by the live pipeline, ``bench`` and ``eval``, so all measure the same thing. Every
    method runs on the thread that processes frames (the pipeline's ``process`` thread);
    live changes reach it through :meth:`FrameProcessor.update
    <mattecam.process.FrameProcessor.update>`, which calls :meth:`swap` between frames.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        refiner: Refiner,
        *,
        crop: bool = True,
        framing: Framing | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.refiner = refiner
        self.framing = framing or Framing(enabled=crop)
        self._rect: Rect | None = None  # the crop the refiner saw last

    def reset(self) -> None:
        """Forget the person's place and the temporal state: the next frame is new."""
        self.framing.reset()
        self.refiner.reset()
        self._rect = None

    def swap(
        self,
        *,
        segmenter: Segmenter | None = None,
        refiner: Refiner | None = None,
        crop: bool | None = None,
    ) -> None:
        """Replace parts between frames; a replaced segmenter is closed. A new crop setting
        starts the framing afresh and resets the refiner's state (it was in the old crop's
        coordinates)."""
        if segmenter is not None and segmenter is not self.segmenter:
            old, self.segmenter = self.segmenter, segmenter
            old.close()
        if refiner is not None:
            self.refiner = refiner
        if crop is not None:
            self.framing = Framing(enabled=crop)
            self._rect = None
            self.refiner.reset()

    def matte(self, picture: I420 | Image, timings: dict[str, float] | None = None) -> Matte:
        """The matte for ``picture`` (the size of its Y plane); ``timings`` gets
        ``preprocess``, ``inference`` and ``refine`` in milliseconds.

        The model sees a small BGR picture made from the planes of the part it looks at
        (:func:`~mattecam.imaging.yuv.model_input`), and the refiner follows the edges of
        the full-resolution luma: no full-size BGR image is made. A BGR picture is
        converted first."""
        segmenter, refiner = self.segmenter, self.refiner
        picture = as_i420(picture)
        framed = self.framing.segment(picture, segmenter)
        t0 = time.perf_counter()
        rect = framed.rect
        if self._rect is not None and rect != self._rect:
            refiner.reframe(remap_matrix(self._rect, rect, segmenter.input_size))
        self._rect = rect
        w, h = picture.size
        x, y, cw, ch = rect
        luma = picture.y
        if (cw, ch) == (w, h):
            matte = refiner.refine(framed.alpha, luma, framed.small)
        else:
            matte = np.zeros((h, w), np.uint8)
            crop = luma[y : y + ch, x : x + cw]
            matte[y : y + ch, x : x + cw] = refiner.refine(framed.alpha, crop, framed.small)
        if timings is not None:
            timings["preprocess"] = framed.preprocess_ms
            timings["inference"] = framed.inference_ms
            timings["refine"] = (time.perf_counter() - t0) * 1e3
        return matte

    def close(self) -> None:
        """Release the model. Idempotent."""
        self.segmenter.close()
