"""The one place that builds processing stages from settings: for a run, a live change,
``bench`` and ``eval`` alike."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from mattecam.compositing.backgrounds import Background, make_background
from mattecam.config import Settings
from mattecam.matte import make_refiner
from mattecam.matte.base import Refiner
from mattecam.matte.stage import MatteStage
from mattecam.process import FrameProcessor
from mattecam.segmentation import open_segmenter
from mattecam.segmentation.base import Segmenter

#: Settings each stage is built from; a live change of one rebuilds that stage only.
BACKGROUND_KEYS = frozenset({"background", "blur_strength"})
SEGMENTER_KEYS = frozenset({"model", "threads"})
REFINER_KEYS = frozenset({"refine", "temporal", "edge_radius", "edge_eps"})


def build_segmenter(settings: Settings) -> Segmenter:
    """The model (fetched on first use). Raises a MattecamError naming the fix."""
    return open_segmenter(settings.model, threads=settings.threads)


def build_refiner(settings: Settings) -> Refiner:
    """The edge refinement chain."""
    return make_refiner(
        settings.refine,
        temporal=settings.temporal,
        radius=settings.edge_radius,
        eps=settings.edge_eps,
    )


def build_background(settings: Settings) -> Background:
    """What goes behind the person. Raises a MattecamError naming the fix."""
    return make_background(settings.background, blur_strength=settings.blur_strength)


def build_matte(settings: Settings) -> MatteStage:
    """Model, framing and refinement: frame in, matte out."""
    return MatteStage(build_segmenter(settings), build_refiner(settings), crop=settings.crop)


def build_processor(settings: Settings) -> FrameProcessor:
    """The whole processing stage. Nothing is left open when a part fails to build."""
    with ExitStack() as stack:
        background = build_background(settings)
        stack.callback(background.close)
        matting = build_matte(settings)
        stack.pop_all()
    return FrameProcessor(
        matting, background, mirror=settings.mirror, light_wrap=settings.light_wrap
    )


@dataclass
class Rebuilt:
    """The stages a live change needs, built and ready to hand to
    :meth:`FrameProcessor.update <mattecam.process.FrameProcessor.update>` (None: keep)."""

    segmenter: Segmenter | None = None
    refiner: Refiner | None = None
    background: Background | None = None

    def close(self) -> None:
        """Release what was built (when the change is abandoned)."""
        if self.segmenter is not None:
            self.segmenter.close()
        if self.background is not None:
            self.background.close()


def rebuild(new: Settings, keys: set[str]) -> Rebuilt:
    """Build the stages that settings ``keys`` (changed to their values in ``new``) need.
    A blur strength rebuilds the background only when it is a blur. If a build fails,
    nothing built before it is left open."""
    out = Rebuilt()
    try:
        if "background" in keys or ("blur_strength" in keys and new.background.kind == "blur"):
            out.background = build_background(new)
        if keys & SEGMENTER_KEYS:
            out.segmenter = build_segmenter(new)
        if keys & REFINER_KEYS:
            out.refiner = build_refiner(new)
    except BaseException:
        out.close()
        raise
    return out
