"""The whole YUV path against the BGR path it replaced: camera JPEG -> frame -> processing ->
each output format, colour patch by colour patch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import simplejpeg

from fakes import FakeSegmenter
from mattecam.compositing import ColorBackground, NoBackground
from mattecam.compositing.backgrounds import Background
from mattecam.frame import Frame
from mattecam.imaging import libyuv
from mattecam.imaging.yuv import I420
from mattecam.matte import make_refiner
from mattecam.matte.stage import MatteStage
from mattecam.process import FrameProcessor
from mattecam.sinks import FORMATS, Converter
from mattecam.sources.mjpeg import JpegReplaySource
from test_yuv_sinks import cells, channels, patches

W, H = 1280, 720
BACKDROP = (40, 180, 90)  # BGR


@pytest.fixture(params=["libyuv", "opencv"], autouse=True)
def yuv_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MATTECAM_LIBYUV", "1" if request.param == "libyuv" else "0")
    libyuv.load.cache_clear()
    if request.param == "libyuv" and libyuv.load() is None:
        libyuv.load.cache_clear()
        pytest.skip("libyuv0 is not installed")
    yield request.param
    libyuv.load.cache_clear()


def processed(jpeg: bytes, background: Background, threshold: float) -> Frame:
    """One camera JPEG through the source and the processing stage, as a run does it.
    The fake model takes everything (threshold -1) or nothing (2) for the person."""
    source = JpegReplaySource([jpeg], fps=30)
    source.open()
    frame = source.read()
    assert frame is not None and isinstance(frame.image, I420)
    matting = MatteStage(FakeSegmenter(threshold=threshold), make_refiner("guided"))
    return FrameProcessor(matting, background).process(frame)


@pytest.mark.parametrize("subsampling", ["422", "420"])
@pytest.mark.parametrize(
    ("case", "background", "threshold"),
    [
        ("pass-through", NoBackground(), 2.0),
        ("person everywhere", ColorBackground(BACKDROP), -1.0),
        ("background everywhere", ColorBackground(BACKDROP), 2.0),
    ],
)
def test_colours_through_every_format_match_the_bgr_path(
    case: str, background: Background, threshold: float, subsampling: str
) -> None:
    """Each patch's colour, in every output format, within 2 levels of what the BGR
    pipeline wrote: the JPEG decoded to BGR (full-range JPEG YUV converted by
    libjpeg-turbo), composited in BGR, converted to the format by the BGR converter.

    Colour is the patch's median; single pixels may differ by a few levels more, because
    JPEG decoders are not bit-exact (libyuv's decoder and simplejpeg's differ by up to 3
    levels in the ringing next to edges, each as close to FFmpeg's as to the other)."""
    picture = patches(W, H)
    jpeg = simplejpeg.encode_jpeg(
        picture, quality=95, colorspace="BGR", colorsubsampling=subsampling
    )
    out = processed(jpeg, background, threshold)
    assert isinstance(out.image, I420) and out.image.size == (W, H)
    if case == "background everywhere":
        expected_bgr = np.full((H, W, 3), BACKDROP, np.uint8)
    else:
        expected_bgr = np.asarray(simplejpeg.decode_jpeg(jpeg, colorspace="BGR"), np.uint8)
    for name, fmt in FORMATS.items():
        got = channels(Converter(fmt, W, H).convert(out.image).copy(), name, W, H)
        want = channels(Converter(fmt, W, H).convert(expected_bgr), name, W, H)
        for k, (rows, cols) in enumerate(cells(W, H)):
            g, w = got[rows, cols].reshape(-1, 3), want[rows, cols].reshape(-1, 3)
            colour = np.abs(np.median(g, axis=0) - np.median(w, axis=0)).max()
            assert colour <= 2, f"{case}, {name}, patch {k}: colour {colour} levels off"
            pixels = np.percentile(np.abs(g - w), 99)
            assert pixels <= 4, f"{case}, {name}, patch {k}: pixels p99 {pixels} levels off"
