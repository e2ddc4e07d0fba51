"""What goes behind the person: an image, a colour, the blurred room, a video, or nothing."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecam.errors import ConfigError, InputNotFoundError, UnsupportedFormatError
from mattecam.frame import Image
from mattecam.imaging import cover_fit, open_container, shrink
from mattecam.imaging.video import to_i420
from mattecam.imaging.yuv import I420, fit
from mattecam.matte.base import Matte
from mattecam.specs import NAMED_COLORS, VIDEO_SUFFIXES, BackgroundSpec, parse_color

log = logging.getLogger(__name__)


class Background(ABC):
    """Renders the picture behind the person for one frame.

    :meth:`render` is called from the processing thread once per frame with the camera frame
    (limited-range :class:`~mattecam.imaging.yuv.I420`) and its matte, and returns an I420
    picture of the same size and range: pictures are converted once per size, colours are
    constant planes, the blur works on small planes. The result may be cached or reused for
    the next frame: the caller blends it at once and never hands it on or modifies it.
    ``close()`` may be called more than once.
    """

    #: False only for the pass-through background, which skips compositing altogether.
    replaces = True

    @abstractmethod
    def render(self, frame: I420, matte: Matte) -> I420:
        """The background for ``frame`` (same size)."""

    def close(self) -> None:  # noqa: B027 - most backgrounds hold no resources
        """Release files or decoders."""


class NoBackground(Background):
    """Pass-through: the camera picture unchanged."""

    replaces = False

    def render(self, frame: I420, matte: Matte) -> I420:
        return frame


class ColorBackground(Background):
    """A flat colour (BGR)."""

    def __init__(self, bgr: tuple[int, int, int]) -> None:
        self.bgr = bgr
        self._cache: I420 | None = None

    def render(self, frame: I420, matte: Matte) -> I420:
        if self._cache is None or self._cache.size != frame.size:
            patch = I420.from_bgr(np.full((2, 2, 3), self.bgr, np.uint8))
            out = I420.empty(*frame.size)
            for plane, value in (
                (out.y, patch.y[0, 0]),
                (out.u, patch.u[0, 0]),
                (out.v, patch.v[0, 0]),
            ):
                plane[:] = value
            self._cache = out
        return self._cache


class ImageBackground(Background):
    """A picture scaled to cover the frame (never stretched), cached per frame size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.image = load_image(path)
        self._cache: I420 | None = None

    def render(self, frame: I420, matte: Matte) -> I420:
        if self._cache is None or self._cache.size != frame.size:
            self._cache = I420.from_bgr(cover_fit(self.image, *frame.size))
        return self._cache


def load_image(path: Path) -> Image:
    """Read an image file as BGR uint8, with clear errors for missing or undecodable files."""
    if not path.is_file():
        raise InputNotFoundError(f"background image {path} does not exist; check the path.")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnsupportedFormatError(
            f"{path} is not an image mattecam can read; use a JPEG, PNG, WebP, BMP or TIFF file."
        )
    return np.asarray(image, dtype=np.uint8)


class BlurBackground(Background):
    """The room behind the person, blurred; the person never bleeds into it.

    The blur is a normalised convolution of the background alone: blur(frame * (1 - a)) /
    blur(1 - a), so pixels near the person are filled from the surrounding room rather than
    from the person (mask before blur). It runs at reduced resolution (a full-resolution
    Gaussian costs ~58 ms at 720p, this well under 1 ms) and is enlarged bilinearly, which a
    strong blur hides.

    ``strength`` is the Gaussian sigma in output pixels at 720p height (scaled with the frame
    height, so the look does not change with resolution); 0 disables blurring.
    """

    def __init__(self, strength: float = 12.0) -> None:
        if not 0 <= strength <= 100:
            raise ConfigError(f"blur strength must be between 0 and 100, got {strength}")
        self.strength = strength
        self._kernel = np.ones((3, 3), np.uint8)
        self._out: I420 | None = None  # reused: the caller blends it at once

    def render(self, frame: I420, matte: Matte) -> I420:
        if self.strength == 0:
            return frame
        w, h = frame.size
        sigma = self.strength * h / 720.0
        # Work at a reduction (4x to 16x) where sigma is ~2 px: enough samples for a smooth
        # Gaussian, few enough pixels to cost well under a millisecond. Each plane is shrunk
        # to the same small size (chroma from its quarter-size plane) and enlarged back to
        # its own size: Y at full resolution, chroma at a quarter.
        k = min(16.0, max(4.0, sigma / 2))
        sw, sh = max(8, round(w / k)), max(8, round(h / k))
        small = cv2.merge(
            [shrink(frame.y, sw, sh), shrink(frame.u, sw, sh), shrink(frame.v, sw, sh)]
        )
        weight8 = shrink(matte, sw, sh)
        # Background weight, with the person's edge pushed outwards so its rim does not leak.
        weight = cv2.erode(255 - weight8, self._kernel).astype(np.float32)
        weight *= np.float32(1.0 / 255.0)
        small_f = small.astype(np.float32)
        # Blur the weighted picture and the weights together (one 4-channel pass).
        stack = np.empty((sh, sw, 4), np.float32)
        np.multiply(small_f, weight[..., None], out=stack[..., :3])
        stack[..., 3] = weight
        blurred = cv2.GaussianBlur(stack, (0, 0), sigma * sw / w)
        # Normalised convolution; where no background is near at all (the person fills the
        # frame), the tiny constant lets the unblurred picture through, which the person
        # covers anyway.
        c = np.float32(0.002)
        bg = (blurred[..., :3] + c * small_f) / (blurred[..., 3:] + c)
        planes = cv2.split(cv2.convertScaleAbs(bg))
        out = self._out
        if out is None or out.size != frame.size:
            out = self._out = I420.empty(w, h)
        for src, dst in zip(planes, (out.y, out.u, out.v), strict=True):
            cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
        return out


class VideoBackground(Background):
    """A video file played in a loop, one video frame per output frame, scaled to cover,
    in I420 from the decoder on (no BGR)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._container: Any = open_container(path)
        self._frames = self._decode()
        self._first = next(self._frames, None)
        if self._first is None:
            self.close()
            raise UnsupportedFormatError(f"background video {path} has no video frames.")

    def _decode(self) -> Iterator[I420]:
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        while True:
            got = False
            for vf in self._container.decode(stream):
                got = True
                yield to_i420(vf)
            if not got:
                return
            self._container.seek(0)

    def render(self, frame: I420, matte: Matte) -> I420:
        if self._first is not None:
            picture, self._first = self._first, None
        else:
            picture = next(self._frames)
        return fit(picture, *frame.size)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _video(spec: BackgroundSpec, strength: float) -> Background:
    assert spec.path is not None
    if not spec.path.is_file():
        raise InputNotFoundError(f"background video {spec.path} does not exist; check the path.")
    return VideoBackground(spec.path)


def _image(spec: BackgroundSpec, strength: float) -> Background:
    assert spec.path is not None
    return ImageBackground(spec.path)


def _color(spec: BackgroundSpec, strength: float) -> Background:
    assert spec.color is not None
    return ColorBackground(spec.color)


#: Background kind -> factory (the spec, the blur strength). A new kind of background is a
#: class above, one entry here, and its parsing in :class:`~mattecam.specs.BackgroundSpec`.
BACKGROUNDS: dict[str, Callable[[BackgroundSpec, float], Background]] = {
    "blur": lambda spec, strength: BlurBackground(strength),
    "none": lambda spec, strength: NoBackground(),
    "color": _color,
    "image": _image,
    "video": _video,
}


def make_background(spec: BackgroundSpec | str, *, blur_strength: float = 12.0) -> Background:
    """Build the background a spec (or ``-b`` text, parsed first) asks for.

    Raises:
        ConfigError: text that is neither a file nor a colour.
        InputNotFoundError: the picture or video does not exist.
        UnsupportedFormatError: it is not a picture or video.
    """
    if isinstance(spec, str):
        spec = BackgroundSpec.parse(spec)
    return BACKGROUNDS[spec.kind](spec, blur_strength)


__all__ = [
    "BACKGROUNDS",
    "NAMED_COLORS",
    "VIDEO_SUFFIXES",
    "Background",
    "BlurBackground",
    "ColorBackground",
    "ImageBackground",
    "NoBackground",
    "VideoBackground",
    "load_image",
    "make_background",
    "parse_color",
]
