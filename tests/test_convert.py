"""Pixel format conversion for virtual cameras."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from mattecam.errors import ConfigError
from mattecam.frame import Frame
from mattecam.sinks import FORMATS, Converter, NullSink, make_sink, pixel_format


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3)


@pytest.mark.parametrize(
    ("name", "code"),
    [("yuyv", cv2.COLOR_BGR2YUV_YUYV), ("uyvy", cv2.COLOR_BGR2YUV_UYVY)],
)
def test_packed_422_matches_opencv(image: np.ndarray, name: str, code: int) -> None:
    out = Converter(FORMATS[name], 160, 120).convert(image)
    ref = cv2.cvtColor(image, code)
    assert out.size == 160 * 120 * 2
    got = out.reshape(120, 160, 2).astype(int)
    luma = 0 if name == "yuyv" else 1
    assert np.abs(got[..., luma] - ref[..., luma]).max() <= 1  # luma: rounding only
    chroma = np.abs(got[..., 1 - luma] - ref[..., 1 - luma])
    assert chroma.mean() < 1 and chroma.max() <= 8  # averaged over 2 rows instead of 1


@pytest.mark.parametrize(
    ("name", "back"),
    [("i420", cv2.COLOR_YUV2BGR_I420), ("nv12", cv2.COLOR_YUV2BGR_NV12)],
)
def test_420_round_trips(image: np.ndarray, name: str, back: int) -> None:
    out = Converter(FORMATS[name], 160, 120).convert(image)
    assert out.size == 160 * 120 * 3 // 2
    restored = cv2.cvtColor(out.reshape(180, 160), back)
    assert np.abs(restored.astype(int) - image).mean() < 2


def test_limited_range_bt601() -> None:
    """Black and white map to Y 16 and 235, grey chroma to 128, as V4L2 consumers expect."""
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 2:] = 255
    out = Converter(FORMATS["yuyv"], 4, 4).convert(img).reshape(4, 4, 2)
    assert out[0, 0, 0] == 16 and out[0, 2, 0] == 235
    assert np.all(np.abs(out[..., 1].astype(int) - 128) <= 1)


def test_rgb_and_bgr(image: np.ndarray) -> None:
    rgb = Converter(FORMATS["rgb24"], 160, 120).convert(image).reshape(120, 160, 3)
    assert np.array_equal(rgb, image[..., ::-1])
    bgr = Converter(FORMATS["bgr24"], 160, 120).convert(image).reshape(120, 160, 3)
    assert np.array_equal(bgr, image)


def test_odd_sizes_are_refused_for_subsampled_formats() -> None:
    with pytest.raises(ConfigError, match="even width"):
        Converter(FORMATS["yuyv"], 161, 120)
    with pytest.raises(ConfigError, match="even"):
        Converter(FORMATS["i420"], 160, 121)
    Converter(FORMATS["rgb24"], 161, 121)  # fine


def test_wrong_frame_size_is_an_error(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected a 320x240"):
        Converter(FORMATS["yuyv"], 320, 240).convert(image)


def test_unknown_format() -> None:
    with pytest.raises(ConfigError, match="unsupported pixel format"):
        pixel_format("bgr32")
    assert pixel_format("YUYV").fourcc == "YUYV"
    assert pixel_format("i420").fourcc == "YU12"


def test_null_sink_converts_and_records_the_stage(image: np.ndarray) -> None:
    sink = make_sink("null:nv12")
    assert isinstance(sink, NullSink)
    sink.open((160, 120), 30)
    f = Frame(image, 0, time.monotonic())
    sink.write(f)
    sink.close()
    assert sink.frames_written == 1
    assert f.timings["convert"] >= 0
