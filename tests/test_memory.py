"""The hot path's allocation behaviour: nothing may grow from frame to frame."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from mattecam.compositing import BlurBackground
from mattecam.frame import Frame
from mattecam.matte import make_refiner
from mattecam.matte.stage import MatteStage
from mattecam.process import FrameProcessor
from mattecam.segmentation import LiteRTSegmenter
from mattecam.sinks import NullSink, pixel_format


def test_processing_and_conversion_do_not_grow(landscape_model: Path) -> None:
    """Run segmentation, refinement (temporal state included), blur compositing and YUYV
    conversion on 300 frames; memory traced by Python (NumPy and OpenCV results included)
    must be the same after the last frame as after the warm-up."""
    rng = np.random.default_rng(0)
    frames = [
        cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 2)
        for _ in range(8)
    ]
    proc = FrameProcessor(
        MatteStage(LiteRTSegmenter(landscape_model), make_refiner("guided")), BlurBackground(12)
    )
    sink = NullSink(pixel_format("yuyv"))
    sink.open((640, 360), 30)

    def step(i: int) -> None:
        out = proc.process(Frame(frames[i % len(frames)], i, 0.0))
        sink.write(out)

    for i in range(30):
        step(i)
    tracemalloc.start()
    try:
        for i in range(30, 60):
            step(i)
        warm, _ = tracemalloc.get_traced_memory()
        for i in range(60, 360):
            step(i)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A leak of even one small mask per frame would add > 10 MB over 300 frames.
    assert end - warm < 256 * 1024, f"grew by {(end - warm) / 1e6:.2f} MB over 300 frames"
