"""Backgrounds and blending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_clip
from mattecam.compositing import (
    Blender,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    NoBackground,
    VideoBackground,
    make_background,
    parse_color,
)
from mattecam.errors import ConfigError, InputNotFoundError, UnsupportedFormatError
from mattecam.imaging import cover_fit, libyuv
from mattecam.imaging.yuv import I420


@pytest.fixture(params=["libyuv", "opencv"])
def blend_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each blend test runs with libyuv's SIMD blend and with the OpenCV fallback."""
    if request.param == "libyuv" and not libyuv.available():
        pytest.skip("libyuv0 is not installed")
    monkeypatch.setenv("MATTECAM_LIBYUV", "1" if request.param == "libyuv" else "0")
    libyuv.load.cache_clear()
    yield request.param
    libyuv.load.cache_clear()


def flat(w: int, h: int, bgr: tuple[int, int, int]) -> I420:
    return I420.from_bgr(np.full((h, w, 3), bgr, np.uint8))


def test_blend_is_exact_at_the_extremes_and_blends_between(blend_impl: str) -> None:
    fg, bg = flat(8, 4, (200, 200, 200)), flat(8, 4, (20, 20, 20))
    matte = np.zeros((4, 8), np.uint8)
    matte[:, 4:6] = 255
    matte[:, 6:] = 128
    out = Blender().blend(fg, bg, matte)
    assert np.all(out.y[:, :4] == bg.y[0, 0]) and np.all(out.u[:, :2] == bg.u[0, 0])
    assert np.all(out.y[:, 4:6] == fg.y[0, 0]) and np.all(out.v[:, 2] == fg.v[0, 0])
    between = (int(fg.y[0, 0]) * 128 + int(bg.y[0, 0]) * 127) / 255
    assert np.all(np.abs(out.y[:, 6:].astype(int) - between) <= 1)


def test_blend_matches_the_bgr_blend(blend_impl: str) -> None:
    """The I420 blend gives the picture a BGR blend of the same pictures gives, within
    rounding, except right at soft edges, where chroma is blended at half resolution (a
    2x2 average of the matte)."""
    rng = np.random.default_rng(0)
    fg_bgr = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 4)
    bg_bgr = np.full((120, 160, 3), (40, 200, 60), np.uint8)
    matte = np.zeros((120, 160), np.uint8)
    matte[20:100, 40:120] = 255
    matte = cv2.GaussianBlur(matte, (0, 0), 3)
    fg, bg = I420.from_bgr(fg_bgr), I420.from_bgr(bg_bgr)
    a = matte[..., None].astype(np.float64) / 255
    expected = fg.to_bgr() * a + bg.to_bgr() * (1 - a)
    out = Blender().blend(fg, bg, matte).to_bgr()
    diff = np.abs(out.astype(float) - expected)
    # Measured: mean 0.67, p99 6.5 (in the soft band, against a strong green), 0-1 elsewhere.
    assert diff.mean() < 1 and np.percentile(diff, 99) <= 8
    assert np.percentile(diff[matte == 255], 99) <= 1 and np.percentile(diff[matte == 0], 99) <= 1


def test_blender_handles_new_sizes_and_never_aliases_results(blend_impl: str) -> None:
    b = Blender()
    results = []
    for w, h, level in [(10, 10, 60), (10, 10, 120), (20, 30, 180)]:
        out = b.blend(
            flat(w, h, (level,) * 3), flat(w, h, (0, 0, 0)), np.full((h, w), 255, np.uint8)
        )
        assert out.size == (w, h)
        results.append(out)
    assert results[0].y.max() < results[1].y.max() < results[2].y.max()
    with pytest.raises(ValueError, match="sizes differ"):
        b.blend(flat(10, 10, (0, 0, 0)), flat(12, 10, (0, 0, 0)), np.zeros((10, 10), np.uint8))


def test_cover_fit_crops_instead_of_stretching() -> None:
    # Left half red, right half blue, 200x100; into a 100x100 square the centre is kept.
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = (0, 0, 255)
    img[:, 100:] = (255, 0, 0)
    img[:, 95:105] = (0, 255, 0)
    out = cover_fit(img, 100, 100)
    assert out.shape == (100, 100, 3)
    assert tuple(out[50, 0]) == (0, 0, 255)
    assert tuple(out[50, 50]) == (0, 255, 0)
    assert tuple(out[50, 99]) == (255, 0, 0)
    # Green band keeps its width (10 px): no horizontal squeeze.
    assert 9 <= np.count_nonzero(out[50, :, 1] > 128) <= 11
    # Upscaling a small picture to a wide frame also keeps proportions.
    tall = cover_fit(img[:, :100], 300, 100)
    assert tall.shape == (100, 300, 3)


@pytest.mark.parametrize(
    ("text", "bgr"),
    [("green", (0, 255, 0)), ("#336699", (0x99, 0x66, 0x33)), ("10,20,30", (30, 20, 10))],
)
def test_parse_color(text: str, bgr: tuple[int, int, int]) -> None:
    assert parse_color(text) == bgr


@pytest.mark.parametrize("bad", ["greenish", "#12345", "300,0,0", ""])
def test_parse_color_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a colour"):
        parse_color(bad)


def test_color_background() -> None:
    frame = flat(8, 6, (0, 0, 0))
    out = ColorBackground((30, 120, 210)).render(frame, np.zeros((6, 8), np.uint8))
    assert out.size == frame.size
    assert np.all(np.abs(out.to_bgr().astype(int) - (30, 120, 210)) <= 2)


def test_blur_background_does_not_bleed_the_person() -> None:
    """A red person on a grey room: the blurred background right next to the person must stay
    grey (normalised, mask-before-blur), while a naive blur would turn it pink."""
    h, w = 360, 640
    frame = np.full((h, w, 3), 100, np.uint8)
    frame[:, :40] = 160  # some structure in the room to blur
    matte = np.zeros((h, w), np.uint8)
    matte[60:300, 260:380] = 255
    frame[matte > 0] = (0, 0, 255)
    bg = BlurBackground(20).render(I420.from_bgr(frame), matte).to_bgr()
    ring = cv2.dilate(matte, np.ones((41, 41), np.uint8)) & ~matte  # 20 px around the person
    near = bg[ring > 0].astype(int)
    red_excess = near[:, 2] - near[:, 0]
    assert np.percentile(np.abs(red_excess), 99) <= 8
    naive = cv2.GaussianBlur(frame, (0, 0), 20)
    assert np.abs(naive[ring > 0][:, 2].astype(int) - naive[ring > 0][:, 0]).max() > 50
    # It is a blur: the sharp room edge at x=40 is spread out.
    row = bg[10, :80, 0].astype(int)
    assert np.count_nonzero((row > 105) & (row < 155)) > 10


def test_blur_strength_zero_is_identity_and_range_checked() -> None:
    frame = I420.from_bgr(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    assert BlurBackground(0).render(frame, np.zeros((32, 32), np.uint8)) is frame
    with pytest.raises(ConfigError):
        BlurBackground(101)


def test_image_background_covers_frame(tmp_path: Path) -> None:
    path = tmp_path / "bg.png"
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 150:] = 255
    cv2.imwrite(str(path), img)
    bg = ImageBackground(path)
    out = bg.render(flat(160, 120, (0, 0, 0)), np.zeros((120, 160), np.uint8)).to_bgr()
    assert out.shape == (120, 160, 3)
    assert out[60, 10].max() <= 1 and out[60, 150].min() >= 254


def test_image_background_errors(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        ImageBackground(tmp_path / "nope.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(UnsupportedFormatError, match="not an image"):
        ImageBackground(text)


def test_video_background_loops(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "bg.mp4", n=3, size=(64, 48))
    vb = VideoBackground(clip)
    frame = flat(32, 24, (0, 0, 0))
    matte = np.zeros((24, 32), np.uint8)
    marks = [int(vb.render(frame, matte).to_bgr()[0, 0, 0]) for _ in range(7)]
    vb.close()
    # The top-left block carries the frame number * 40: 0, 40, 80, 0, ...
    assert [round(m / 40) for m in marks] == [0, 1, 2, 0, 1, 2, 0]


def test_make_background_dispatch(tmp_path: Path) -> None:
    assert isinstance(make_background("blur"), BlurBackground)
    assert isinstance(make_background("none"), NoBackground)
    assert isinstance(make_background("green"), ColorBackground)
    assert isinstance(make_background("#00ff00"), ColorBackground)
    with pytest.raises(ConfigError, match="neither a file nor a colour"):
        make_background("beach")
    with pytest.raises(InputNotFoundError):
        make_background(str(tmp_path / "beach.jpg"))
    with pytest.raises(InputNotFoundError):
        make_background(str(tmp_path / "waves.mp4"))
