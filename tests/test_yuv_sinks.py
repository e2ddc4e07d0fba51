"""Outputs fed I420 pictures, as the pipeline hands them over: the same bytes and colours as
the BGR path (the reference), without conversion where the output is YUV. Every test runs
with libyuv's packing and with the OpenCV fallback."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from mattecam.frame import Frame
from mattecam.imaging import libyuv
from mattecam.imaging.yuv import I420
from mattecam.sinks import FORMATS, Converter, FileSink, LatestFrameSink, PreviewSink
from mattecam.sinks.v4l2loopback import V4L2LoopbackSink


@pytest.fixture(params=["libyuv", "opencv"], autouse=True)
def yuv_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """libyuv's SIMD packing, then the OpenCV fallback (``MATTECAM_LIBYUV=0``)."""
    monkeypatch.setenv("MATTECAM_LIBYUV", "1" if request.param == "libyuv" else "0")
    libyuv.load.cache_clear()
    if request.param == "libyuv" and libyuv.load() is None:
        libyuv.load.cache_clear()
        pytest.skip("libyuv0 is not installed")
    assert (libyuv.load() is None) == (request.param == "opencv")
    yield request.param
    libyuv.load.cache_clear()  # the next load() reads the restored environment


#: Flat BGR patches: the extremes, grey, primaries, two skin tones, a strong orange.
COLOURS = [
    (0, 0, 0),
    (255, 255, 255),
    (128, 128, 128),
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (130, 160, 220),  # light skin
    (60, 90, 150),  # dark skin
    (0, 140, 255),  # orange
]
SIZES = [(160, 120), (1280, 720)]
#: Pixels left out along every patch border: chroma is shared by 2x2 pixels (and by 2 rows
#: more in the 4:2:2 formats), and video encoders smear edges further.
MARGIN = 4


def cells(w: int, h: int) -> list[tuple[slice, slice]]:
    """The interior (rows, columns) of each patch of a 3 x 3 grid, borders on even pixels."""
    xs = [w * i // 3 // 2 * 2 for i in range(4)]
    ys = [h * i // 3 // 2 * 2 for i in range(4)]
    return [
        (slice(ys[r] + MARGIN, ys[r + 1] - MARGIN), slice(xs[c] + MARGIN, xs[c + 1] - MARGIN))
        for r in range(3)
        for c in range(3)
    ]


def patches(w: int, h: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    xs = [w * i // 3 // 2 * 2 for i in range(4)]
    ys = [h * i // 3 // 2 * 2 for i in range(4)]
    for k, bgr in enumerate(COLOURS):
        r, c = divmod(k, 3)
        img[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = bgr
    return img


def channels(out: np.ndarray, name: str, w: int, h: int) -> np.ndarray:
    """A converted frame as (h, w, 3) ints read by the format's published layout: Y, U, V
    with chroma repeated to full size, or the three colour bytes of RGB24/BGR24."""
    if name in ("rgb24", "bgr24"):
        return out.reshape(h, w, 3).astype(int)
    if name in ("yuyv", "uyvy"):
        packed = out.reshape(h, w // 2, 4).astype(int)
        iy, iu, iv = (0, 1, 3) if name == "yuyv" else (1, 0, 2)
        y = packed[..., [iy, iy + 2]].reshape(h, w)
        u, v = packed[..., iu].repeat(2, axis=1), packed[..., iv].repeat(2, axis=1)
        return np.stack([y, u, v], axis=-1)
    flat = out.astype(int)
    y = flat[: h * w].reshape(h, w)
    if name == "i420":
        u = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
        v = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2)
    else:  # nv12
        uv = flat[h * w :].reshape(h // 2, w // 2, 2)
        u, v = uv[..., 0], uv[..., 1]
    up = [p.repeat(2, axis=0).repeat(2, axis=1) for p in (u, v)]
    return np.stack([y, *up], axis=-1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(FORMATS))
def test_i420_patches_match_the_bgr_path(name: str, size: tuple[int, int]) -> None:
    """An I420 picture gives the bytes the BGR path gives for its BGR image, within 2
    levels inside each patch: the I420 path matches the reference, in every format."""
    w, h = size
    bgr = patches(w, h)
    conv = Converter(FORMATS[name], w, h)
    ref = channels(conv.convert(bgr).copy(), name, w, h)
    got = channels(conv.convert(I420.from_bgr(bgr)), name, w, h)
    for bgr_colour, (rows, cols) in zip(COLOURS, cells(w, h), strict=True):
        err = np.abs(got[rows, cols] - ref[rows, cols]).max()
        assert err <= 2, (name, bgr_colour, err)


@pytest.mark.parametrize("name", ["yuyv", "uyvy", "i420", "nv12"])
def test_yuv_formats_are_byte_identical_on_a_textured_picture(name: str) -> None:
    """Everywhere, not only inside flat patches: YUV outputs of an I420 picture are exactly
    what the BGR path makes (both sample chroma the same way)."""
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    bgr = np.asarray(cv2.GaussianBlur(noise, (0, 0), 2), np.uint8)
    conv = Converter(FORMATS[name], 160, 120)
    ref = conv.convert(bgr).copy()
    assert np.array_equal(conv.convert(I420.from_bgr(bgr)), ref)


def test_i420_to_i420_is_zero_copy() -> None:
    pic = I420.from_bgr(patches(160, 120))
    out = Converter(FORMATS["i420"], 160, 120).convert(pic)
    assert out.shape == (FORMATS["i420"].frame_bytes(160, 120),) and out.flags.c_contiguous
    assert np.shares_memory(out, pic.data)
    assert np.array_equal(out, pic.data.reshape(-1))
    for name in ("yuyv", "nv12", "rgb24"):  # the others write the converter's buffer
        assert not np.shares_memory(Converter(FORMATS[name], 160, 120).convert(pic), pic.data)


def full_range(pic: I420) -> I420:
    """The same colours in full range (as a JPEG decoder gives them)."""
    y = (pic.y.astype(np.float64) - 16) * 255 / 219
    c = (pic.chroma.astype(np.float64) - 128) * 255 / 224 + 128
    data = np.clip(np.rint(np.vstack([y, c])), 0, 255).astype(np.uint8)
    return I420(data, pic.width, pic.height, full_range=True)


@pytest.mark.parametrize("name", list(FORMATS))
def test_full_range_pictures_are_written_in_limited_range(name: str) -> None:
    w, h = 160, 120
    pic = I420.from_bgr(patches(w, h))
    conv = Converter(FORMATS[name], w, h)
    ref = channels(conv.convert(pic).copy(), name, w, h)
    got = channels(conv.convert(full_range(pic)), name, w, h)
    for rows, cols in cells(w, h):
        assert np.abs(got[rows, cols] - ref[rows, cols]).max() <= 2, name


def test_wrong_picture_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected a 320x240"):
        Converter(FORMATS["i420"], 320, 240).convert(I420.empty(160, 120))


def test_v4l2loopback_writes_the_picture_and_times_the_conversion() -> None:
    """The device's write path (a temporary file stands in for the device node): an I420
    frame is written as it is, a BGR one converted, and the ``convert`` stage is recorded."""
    pic = I420.from_bgr(patches(160, 120))
    sink = V4L2LoopbackSink("/dev/null", FORMATS["i420"])
    with tempfile.TemporaryFile() as f:
        sink._fd, sink._converter = f.fileno(), Converter(FORMATS["i420"], 160, 120)
        frames = [Frame(pic, 0, time.monotonic()), Frame(pic.to_bgr(), 1, time.monotonic())]
        for frame in frames:
            sink.write(frame)
            assert frame.timings["convert"] >= 0
        sink._fd = None
        f.seek(0)
        data = np.frombuffer(f.read(), np.uint8).reshape(2, -1)
    assert sink.frames_written == 2
    assert np.array_equal(data[0], pic.data.reshape(-1))
    assert np.abs(data[1].astype(int) - data[0]).max() <= 2  # the BGR round trip


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        assert stream.codec_context.color_range == 1  # tagged limited ("tv") range
    return frames


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_file_from_i420_frames_decodes_like_one_from_bgr(
    tmp_path: Path, suffix: str, size: tuple[int, int]
) -> None:
    w, h = size
    bgr = patches(w, h)
    pic = I420.from_bgr(bgr)
    decoded = []
    for kind, picture in (("bgr", bgr), ("i420", pic)):
        path = tmp_path / f"{kind}{suffix}"
        sink = FileSink(path)
        sink.open(size, 25.0)
        for i in range(4):
            sink.write(Frame(picture, i, time.monotonic()))
        sink.close()
        got = decode(path)
        assert len(got) == 4 and got[0].shape == (h, w, 3)
        decoded.append(got[-1].astype(int))
    from_bgr, from_i420 = decoded
    for colour, (rows, cols) in zip(COLOURS, cells(w, h), strict=True):
        err = np.abs(from_i420[rows, cols] - from_bgr[rows, cols]).max()
        assert err <= 2, (suffix, colour, err)
        # and are the colours that went in (the encoders ring up to 9 levels near edges,
        # so per patch; a range or matrix mistake moves a whole patch by 10+ levels)
        drift = np.abs(np.median(from_i420[rows, cols], axis=(0, 1)) - colour).max()
        assert drift <= 3, (suffix, colour, drift)


def test_file_of_odd_size_takes_i420_frames_of_the_even_size(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    sink = FileSink(path)
    sink.open((95, 63), 25.0)
    sink.write(Frame(I420.from_bgr(patches(94, 62)), 0, time.monotonic()))
    sink.write(Frame(patches(95, 63), 1, time.monotonic()))  # BGR: cropped
    with pytest.raises(ValueError, match="expected a 94x62"):
        sink.write(Frame(I420.empty(96, 64), 2, time.monotonic()))
    sink.close()
    got = decode(path)
    assert [f.shape for f in got] == [(62, 94, 3)] * 2


def test_latest_frame_sink_returns_bgr_for_i420_frames() -> None:
    bgr = patches(160, 120)
    pic = I420.from_bgr(bgr)
    sink = LatestFrameSink()
    sink.open((160, 120), 30)
    assert sink.latest() is None and sink.latest_live() is None
    sink.write(Frame(pic, 0, time.monotonic()))
    got = sink.latest()
    assert isinstance(got, np.ndarray) and got.shape == (120, 160, 3) and got.dtype == np.uint8
    for rows, cols in cells(160, 120):
        assert np.abs(got[rows, cols].astype(int) - bgr[rows, cols]).max() <= 2
    assert sink.latest() is got  # converted once per picture
    live = sink.latest_live()
    assert live is not None and np.array_equal(live, got)
    assert sink.latest_live() is live

    placeholder = I420.from_bgr(np.full((120, 160, 3), 90, np.uint8))
    sink.write(Frame(placeholder, -1, time.monotonic()))
    shown = sink.latest()
    assert shown is not None and abs(int(shown[60, 80, 0]) - 90) <= 2
    assert sink.latest_live() is live  # the live picture is still the camera's, converted once

    sink.write(Frame(bgr, 1, time.monotonic()))  # BGR frames are handed back as they are
    assert sink.latest() is bgr and sink.latest_live() is bgr
    sink.close()
    assert sink.latest() is None and sink.latest_live() is None


def test_preview_shows_i420_frames() -> None:
    bgr = patches(160, 120)
    ppm = PreviewSink()._ppm(Frame(I420.from_bgr(bgr), 0, time.monotonic()))
    head = b"P6 160 120 255 "
    assert ppm.startswith(head)
    rgb = np.frombuffer(ppm[len(head) :], np.uint8).reshape(120, 160, 3)
    for rows, cols in cells(160, 120):
        assert np.abs(rgb[rows, cols, ::-1].astype(int) - bgr[rows, cols]).max() <= 2
