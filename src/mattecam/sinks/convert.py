"""BGR frames to the pixel formats virtual cameras and video consumers take."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.errors import ConfigError
from mattecam.frame import Image


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """A V4L2 pixel format mattecam can produce."""

    name: str
    fourcc: str
    #: bytes per frame = width * height * num // den
    num: int
    den: int
    #: Chroma-subsampled formats need even sizes.
    even_width: bool
    even_height: bool

    def frame_bytes(self, width: int, height: int) -> int:
        """Bytes of one frame (exact: no padding, no page alignment)."""
        return width * height * self.num // self.den


FORMATS: dict[str, PixelFormat] = {
    f.name: f
    for f in (
        # Made through I420, so they need an even height too.
        PixelFormat("yuyv", "YUYV", 2, 1, True, True),
        PixelFormat("uyvy", "UYVY", 2, 1, True, True),
        PixelFormat("i420", "YU12", 3, 2, True, True),
        PixelFormat("nv12", "NV12", 3, 2, True, True),
        PixelFormat("rgb24", "RGB3", 3, 1, False, False),
        PixelFormat("bgr24", "BGR3", 3, 1, False, False),
    )
}


def pixel_format(name: str) -> PixelFormat:
    """Look up a format by name (``yuyv``, ``i420``...), case-insensitively."""
    fmt = FORMATS.get(name.lower())
    if fmt is None:
        raise ConfigError(f"unsupported pixel format {name!r}; use one of {', '.join(FORMATS)}.")
    return fmt


class Converter:
    """Converts BGR frames of one size to one pixel format, reusing its buffers.

    Colour: BT.601 limited range (OpenCV's ``_I420``/``_YUYV`` codes), what V4L2 consumers
    assume for these formats. YUYV is made from I420 by duplicating chroma rows and
    interleaving with ``mixChannels``: about twice as fast as ``COLOR_BGR2YUV_YUYV``.

    :meth:`convert` returns a C-contiguous uint8 array holding exactly one frame's bytes; it
    is overwritten by the next call. Not thread-safe: one per writing thread.
    """

    def __init__(self, fmt: PixelFormat, width: int, height: int) -> None:
        if (fmt.even_width and width % 2) or (fmt.even_height and height % 2):
            raise ConfigError(
                f"{fmt.name.upper()} needs an even width{' and height' if fmt.even_height else ''}"
                f"; {width}x{height} is not. Choose another size with --width/--height."
            )
        self.fmt = fmt
        self.width, self.height = width, height
        h, w = height, width
        self._i420 = np.empty((h * 3 // 2, w), np.uint8)
        self._out = np.empty(fmt.frame_bytes(w, h), np.uint8)
        self._chroma = np.empty((2, h, w // 2), np.uint8)

    def convert(self, image: Image) -> NDArray[np.uint8]:
        """One frame in the target format."""
        h, w = self.height, self.width
        if image.shape != (h, w, 3):
            raise ValueError(f"expected a {w}x{h} BGR frame, got shape {image.shape}")
        name = self.fmt.name
        out = self._out
        if name == "bgr24":
            out[:] = image.reshape(-1)
            return out
        if name == "rgb24":
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out.reshape(h, w, 3))
            return out
        if name == "i420":
            cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420, dst=out.reshape(h * 3 // 2, w))
            return out
        i420 = self._i420
        cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420, dst=i420)
        quarter = h * w // 4
        u = i420[h:].reshape(-1)[:quarter].reshape(h // 2, w // 2)
        v = i420[h:].reshape(-1)[quarter:].reshape(h // 2, w // 2)
        if name == "nv12":
            out[: h * w] = i420[:h].reshape(-1)
            uv = out[h * w :].reshape(h // 2, w // 2, 2)
            cv2.merge([u, v], dst=uv)
            return out
        # YUYV / UYVY: 4:2:2, so each chroma row serves two luma rows.
        cu, cv_ = self._chroma[0], self._chroma[1]
        cu.reshape(h // 2, 2, w // 2)[:] = u[:, None, :]
        cv_.reshape(h // 2, 2, w // 2)[:] = v[:, None, :]
        y = i420[:h].reshape(h, w // 2, 2)
        packed = out.reshape(h, w // 2, 4)
        order = [0, 0, 1, 2, 2, 1, 3, 3] if name == "yuyv" else [0, 1, 1, 3, 2, 0, 3, 2]
        cv2.mixChannels([y, cu, cv_], [packed], order)
        return out
