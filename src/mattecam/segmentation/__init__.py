"""Person segmentation: model runtimes and model acquisition."""

from __future__ import annotations

from mattecam.segmentation.base import Alpha, Segmenter
from mattecam.segmentation.litert import LiteRTSegmenter
from mattecam.segmentation.models import resolve


def open_segmenter(model: str, *, threads: int = 1, auto_fetch: bool = True) -> Segmenter:
    """A segmenter for ``model``: a known model name (``landscape``, ``general``) or a path."""
    path, _ = resolve(model, auto_fetch=auto_fetch)
    return LiteRTSegmenter(path, threads=threads)


__all__ = ["Alpha", "LiteRTSegmenter", "Segmenter", "open_segmenter"]
