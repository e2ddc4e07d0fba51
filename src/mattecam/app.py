"""Builds a pipeline from settings: the one place that chooses concrete stages."""

from __future__ import annotations

from contextlib import ExitStack

from mattecam.compositing.backgrounds import make_background
from mattecam.config import Settings
from mattecam.matte import make_refiner
from mattecam.pipeline import Pipeline
from mattecam.process import FrameProcessor
from mattecam.segmentation import open_segmenter
from mattecam.sinks import PreviewSink, make_sink
from mattecam.sinks.base import Sink
from mattecam.sources import camera_path, make_source


def build_pipeline(settings: Settings) -> Pipeline:
    """Validate everything that can be checked before opening devices, and wire the stages.

    Batch mode (every frame, as fast as possible) when a video file goes only to files or
    null; live mode (paced input, newest frame wins, output on its own clock) otherwise.
    """
    sinks: list[Sink] = [
        make_sink(spec, output_format=settings.output_format) for spec in settings.outputs
    ]
    if settings.preview:
        sinks.append(PreviewSink())
    is_camera = camera_path(settings.input) is not None
    live = is_camera or settings.loop or any(s.live for s in sinks)
    source = make_source(
        settings.input,
        size=settings.size,
        fps=settings.fps,
        loop=settings.loop,
        realtime=live,
        camera_format=settings.camera_format,
    )
    with ExitStack() as stack:
        background = make_background(settings.background, blur_strength=settings.blur_strength)
        stack.callback(background.close)
        segmenter = open_segmenter(settings.model, threads=settings.threads)
        stack.pop_all()
    refiner = make_refiner(
        settings.refine,
        temporal=settings.temporal,
        radius=settings.edge_radius,
        eps=settings.edge_eps,
    )
    processor = FrameProcessor(
        segmenter, refiner, background, mirror=settings.mirror, light_wrap=settings.light_wrap
    )
    return Pipeline(
        source, processor, sinks, live=live, fps=settings.fps, always_on=settings.always_on
    )
