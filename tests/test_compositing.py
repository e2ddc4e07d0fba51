"""Backgrounds and blending."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_clip
from mattecam.compositing import (
    BlurBackground,
    ColorBackground,
    Compositor,
    ImageBackground,
    NoBackground,
    VideoBackground,
    make_background,
    parse_color,
)
from mattecam.errors import ConfigError, InputNotFoundError, UnsupportedFormatError
from mattecam.imaging import cover_fit


def test_composite_is_exact_at_the_extremes_and_blends_between() -> None:
    fg = np.full((4, 6, 3), 200, np.uint8)
    bg = np.full((4, 6, 3), 20, np.uint8)
    matte = np.zeros((4, 6), np.uint8)
    matte[:, 2] = 255
    matte[:, 3] = 128
    out = Compositor().composite(fg, bg, matte)
    assert np.all(out[:, :2] == 20)
    assert np.all(out[:, 2] == 200)
    assert np.all(np.abs(out[:, 3].astype(int) - (200 * 128 + 20 * 127) / 255) <= 1)


def test_compositor_reuses_buffers_and_handles_new_sizes() -> None:
    c = Compositor()
    for shape in [(10, 10, 3), (10, 10, 3), (20, 30, 3)]:
        fg = np.full(shape, 255, np.uint8)
        out = c.composite(fg, np.zeros(shape, np.uint8), np.full(shape[:2], 255, np.uint8))
        assert out.shape == shape
        assert out.min() == 255


def test_result_is_not_aliased_between_frames() -> None:
    c = Compositor()
    shape = (8, 8, 3)
    m = np.full(shape[:2], 255, np.uint8)
    a = c.composite(np.full(shape, 10, np.uint8), np.zeros(shape, np.uint8), m)
    b = c.composite(np.full(shape, 99, np.uint8), np.zeros(shape, np.uint8), m)
    assert a.max() == 10 and b.max() == 99


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
    frame = np.zeros((5, 7, 3), np.uint8)
    out = ColorBackground((1, 2, 3)).render(frame, np.zeros((5, 7), np.uint8))
    assert out.shape == frame.shape
    assert np.all(out == (1, 2, 3))


def test_blur_background_does_not_bleed_the_person() -> None:
    """A red person on a grey room: the blurred background right next to the person must stay
    grey (normalised, mask-before-blur), while a naive blur would turn it pink."""
    h, w = 360, 640
    frame = np.full((h, w, 3), 100, np.uint8)
    frame[:, :40] = 160  # some structure in the room to blur
    matte = np.zeros((h, w), np.uint8)
    matte[60:300, 260:380] = 255
    frame[matte > 0] = (0, 0, 255)
    bg = BlurBackground(20).render(frame, matte)
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
    frame = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert BlurBackground(0).render(frame, np.zeros((32, 32), np.uint8)) is frame
    with pytest.raises(ConfigError):
        BlurBackground(101)


def test_image_background_covers_frame(tmp_path: Path) -> None:
    path = tmp_path / "bg.png"
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 150:] = 255
    cv2.imwrite(str(path), img)
    bg = ImageBackground(path)
    out = bg.render(np.zeros((120, 160, 3), np.uint8), np.zeros((120, 160), np.uint8))
    assert out.shape == (120, 160, 3)
    assert out[60, 10].max() == 0 and out[60, 150].min() == 255


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
    frame = np.zeros((24, 32, 3), np.uint8)
    matte = np.zeros((24, 32), np.uint8)
    marks = [int(vb.render(frame, matte)[0, 0, 0]) for _ in range(7)]
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
