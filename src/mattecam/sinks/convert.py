"""Pictures (I420 or BGR) to the pixel formats virtual cameras and video consumers take."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.errors import ConfigError
from mattecam.imaging.yuv import I420, Picture, pack_422, pack_nv12


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
    """Converts pictures of one size to one pixel format, reusing its buffers.

    Colour: BT.601 limited range (Y 16-235, chroma 16-240), what V4L2 consumers assume for
    these formats, and what pipeline frames carry already.

    An :class:`~mattecam.imaging.yuv.I420` picture (what the pipeline hands over) needs
    little or no work: I420 is its own buffer (a full-range picture is made limited
    first), NV12 and YUYV/UYVY are one packing pass (libyuv when present, else OpenCV),
    RGB24/BGR24 one OpenCV conversion. A BGR image (tests, callers that draw in BGR) goes
    through OpenCV's ``COLOR_BGR2YUV_I420``, the same matrix and range, so both kinds of
    picture give the same YUV bytes (RGB within 2 levels); YUYV from it is made by
    duplicating chroma rows and interleaving with ``mixChannels``, about twice as fast as
    ``COLOR_BGR2YUV_YUYV``. Measured at 720p, from I420 with libyuv (OpenCV fallback) and
    from BGR: YUYV 0.05 (0.38) against 0.47 ms, NV12 0.04 (0.03) against 0.12 ms, I420
    nothing against 0.09 ms; RGB24 0.08 ms against 0.04 ms.

    :meth:`convert` returns a C-contiguous uint8 array holding exactly one frame's bytes. It
    is overwritten by the next call, or, for an I420 picture converted to I420, *is* the
    picture's own buffer: the caller must not modify it (it only writes it out), which is
    safe because pictures are never modified after they are handed on. Not thread-safe: one
    per writing thread.
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

    def convert(self, picture: Picture) -> NDArray[np.uint8]:
        """One frame in the target format (see the class notes on the returned array)."""
        h, w = self.height, self.width
        if isinstance(picture, I420):
            if picture.size != (w, h):
                raise ValueError(f"expected a {w}x{h} picture, got {picture!r}")
            return self._from_i420(picture.limited())
        if picture.shape != (h, w, 3):
            raise ValueError(f"expected a {w}x{h} BGR frame, got shape {picture.shape}")
        return self._from_bgr(picture)

    def _from_i420(self, pic: I420) -> NDArray[np.uint8]:
        name = self.fmt.name
        out = self._out
        if name == "i420":
            return pic.data.reshape(-1)  # zero copy: a view of the picture's buffer
        if name == "nv12":
            pack_nv12(pic, out)
        elif name in ("yuyv", "uyvy"):
            pack_422(pic, out, name)
        else:
            code = cv2.COLOR_YUV2RGB_I420 if name == "rgb24" else cv2.COLOR_YUV2BGR_I420
            cv2.cvtColor(pic.data, code, dst=out.reshape(self.height, self.width, 3))
        return out

    def _from_bgr(self, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        h, w = self.height, self.width
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
