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


#: BGR colour patches; BT.601 limited-range YUV computed from first principles below.
PATCHES = [
    (0, 0, 0),
    (255, 255, 255),
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (51, 102, 255),
    (128, 128, 128),
    (200, 60, 20),
]


def bt601_limited(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    """Y' in 16-235, Cb and Cr in 16-240 (ITU-R BT.601, 8-bit studio range)."""
    b, g, r = bgr
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y, cb, cr


def planes(out: np.ndarray, name: str, w: int, h: int) -> tuple[np.ndarray, ...]:
    """Y, U, V of a converted frame, chroma repeated to full size, read by the format's
    published layout (not by OpenCV)."""
    if name in ("yuyv", "uyvy"):
        packed = out.reshape(h, w // 2, 4).astype(int)
        iy, iu, iv = (0, 1, 3) if name == "yuyv" else (1, 0, 2)
        y = packed[..., [iy, iy + 2]].reshape(h, w)
        u, v = packed[..., iu], packed[..., iv]
        return y, u.repeat(2, axis=1), v.repeat(2, axis=1)
    flat = out.astype(int)
    y = flat[: h * w].reshape(h, w)
    if name == "i420":
        u = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
        v = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2)
    else:  # nv12
        uv = flat[h * w :].reshape(h // 2, w // 2, 2)
        u, v = uv[..., 0], uv[..., 1]
    return y, u.repeat(2, axis=0).repeat(2, axis=1), v.repeat(2, axis=0).repeat(2, axis=1)


@pytest.mark.parametrize("name", ["yuyv", "uyvy", "i420", "nv12"])
def test_colour_patches_match_bt601_limited_range(name: str) -> None:
    """Flat 4x4 patches (whole chroma samples) come out as the BT.601 limited-range values,
    within rounding: catches full range, swapped U/V or R/B, and wrong byte order."""
    w, h = 16, 8
    img = np.zeros((h, w, 3), np.uint8)
    for k, bgr in enumerate(PATCHES):
        row, col = divmod(k, 4)
        img[4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = bgr
    out = Converter(FORMATS[name], w, h).convert(img)
    assert out.shape == (FORMATS[name].frame_bytes(w, h),)
    y, u, v = planes(out, name, w, h)
    for k, bgr in enumerate(PATCHES):
        row, col = divmod(k, 4)
        patch = np.s_[4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
        want = bt601_limited(bgr)
        for plane, expected, label in zip((y, u, v), want, "YUV", strict=True):
            err = np.abs(plane[patch] - expected).max()
            assert err <= 1.5, (name, bgr, label, plane[patch].min(), round(expected, 1))


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


def i420_to_nv12(i420: np.ndarray, w: int, h: int) -> np.ndarray:
    """NV12 from OpenCV's I420: the same Y plane, then U and V interleaved."""
    flat = i420.reshape(-1)
    u, v = flat[h * w : h * w * 5 // 4], flat[h * w * 5 // 4 :]
    return np.concatenate([flat[: h * w], np.stack([u, v], axis=-1).reshape(-1)])


def test_null_sink_converts_and_records_the_stage(
    image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each frame is converted to the sink's format, and the milliseconds that took are the
    frame's ``convert`` stage: no less than the conversion itself, no more than the write."""
    real = Converter.convert
    converted: list[np.ndarray] = []
    inner_ms: list[float] = []

    def timed(self: Converter, img: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = real(self, img)
        inner_ms.append((time.perf_counter() - t) * 1e3)
        converted.append(out.copy())
        return out

    monkeypatch.setattr(Converter, "convert", timed)
    sink = make_sink("null:nv12")
    assert isinstance(sink, NullSink)
    sink.open((160, 120), 30)
    frames = [Frame(np.roll(image, 9 * i, axis=1), i, time.monotonic()) for i in range(3)]
    for f in frames:
        t = time.perf_counter()
        sink.write(f)
        write_ms = (time.perf_counter() - t) * 1e3
        assert len(inner_ms) == f.seq + 1  # converted once per frame
        assert 0 < inner_ms[-1] <= f.timings["convert"] <= write_ms, (inner_ms, f.timings)
    sink.close()
    assert sink.frames_written == 3
    for f, got in zip(frames, converted, strict=True):
        ref = cv2.cvtColor(f.image, cv2.COLOR_BGR2YUV_I420)
        assert np.array_equal(got, i420_to_nv12(ref, 160, 120)), f.seq

    plain = make_sink("null")  # no pixel format: nothing converted, no stage recorded
    plain.open((160, 120), 30)
    f = Frame(image, 0, time.monotonic())
    plain.write(f)
    plain.close()
    assert "convert" not in f.timings and len(converted) == 3
