"""MJPEG: what HD webcams deliver. Decoding, and a replay source for benchmarks."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from mattecam.errors import SourceError
from mattecam.frame import Frame, Image
from mattecam.imaging import libyuv
from mattecam.imaging.yuv import I420, Picture, as_bgr, to_limited
from mattecam.sources.base import Source

#: Pixels a JPEG header may claim before it is taken for a corrupt one (8K is 7680x4320):
#: a damaged header must not make the decoder allocate gigabytes.
MAX_PIXELS = 8192 * 8192

JpegData: TypeAlias = bytes | memoryview | NDArray[np.uint8]
"""JPEG bytes: a ``bytes``/``memoryview``, or a uint8 array (a camera's raw buffer, which
may be one row and may carry padding after the image's end marker)."""


def decode_jpeg(data: JpegData) -> I420:
    """Decode one JPEG to a limited-range I420 picture.

    With libyuv, ``MJPGToI420`` decodes straight to planes with libjpeg-turbo (4:2:2 and
    4:4:4 chroma are brought to 4:2:0 on the way) and the full-range JPEG planes are
    converted to limited range in place. Without it (or when libyuv cannot take this JPEG,
    e.g. odd sides), simplejpeg decodes to BGR and the BGR is converted; an odd side loses
    its last column or row. Medians at 1280x720, 4:2:2, quality 85, on a 2-core machine
    shared with other work: libyuv 1.5 ms + 0.17 ms range conversion (1.7 ms), against
    1.9 ms + 0.2 ms for the fallback (2.1 ms); BGR alone took 1.9 ms.

    Raises:
        SourceError: the data is not a decodable JPEG (a corrupt camera frame). libjpeg
            repairs some damage by itself (a bad marker inside the entropy-coded data): the
            libyuv path then returns the damaged picture where simplejpeg would refuse it.
    """
    buf = _as_array(data)
    lib = libyuv.load()
    if lib is not None:
        pic = _decode_libyuv(lib, buf)
        if pic is not None:
            return pic
    bgr = decode_jpeg_bgr(buf)
    h, w = bgr.shape[:2]
    if w < 2 or h < 2:
        raise SourceError(f"corrupt MJPEG frame: {w}x{h} is too small for a video frame")
    return I420.from_bgr(bgr[: h - h % 2, : w - w % 2])


def decode_jpeg_bgr(data: JpegData) -> Image:
    """Decode one JPEG to BGR with libjpeg-turbo (simplejpeg): ~1.9 ms at 720p 4:2:2,
    against ~5 ms for ``cv2.imdecode`` on this class of machine (the I420 fallback of
    :func:`decode_jpeg`).

    Raises:
        SourceError: the data is not a decodable JPEG.
    """
    import simplejpeg

    buf = _as_array(data)
    try:
        h, w = simplejpeg.decode_jpeg_header(buf)[:2]  # ~1 us
        _check_size(w, h)
        return np.asarray(simplejpeg.decode_jpeg(buf, colorspace="BGR"), np.uint8)
    except ValueError as e:
        raise SourceError(f"corrupt MJPEG frame: {e}") from e


def _check_size(width: int, height: int) -> None:
    """Raise for a header that claims more than :data:`MAX_PIXELS`."""
    if width * height > MAX_PIXELS:
        raise SourceError(f"corrupt MJPEG frame: its header claims {width}x{height} pixels")


def _as_array(data: JpegData) -> NDArray[np.uint8]:
    """The bytes as a flat, contiguous uint8 array, without a copy where possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data, np.uint8).reshape(-1)
    return np.frombuffer(data, np.uint8)


def _decode_libyuv(lib: Any, buf: NDArray[np.uint8]) -> I420 | None:
    """``MJPGToI420`` into a new picture, converted to limited range in place (one buffer:
    no second 1.4 MB allocation per 720p frame, and the same speed as converting into
    another one). None when libyuv cannot decode this JPEG: the caller tries simplejpeg,
    which either decodes it or says what is wrong with it."""
    src = ctypes.cast(buf.ctypes.data, ctypes.c_char_p)
    w, h = ctypes.c_int(), ctypes.c_int()
    if lib.MJPGSize(src, buf.size, ctypes.byref(w), ctypes.byref(h)) != 0:
        return None
    width, height = w.value, h.value
    _check_size(width, height)
    # MJPGToI420 cannot crop: an odd side would need chroma planes of (side + 1) / 2.
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        return None
    pic = I420(np.empty((height * 3 // 2, width), np.uint8), width, height, full_range=True)
    y, u, v = pic.y, pic.u, pic.v
    half = width // 2
    ret = lib.MJPGToI420(
        src, buf.size, y.ctypes.data, width, u.ctypes.data, half, v.ctypes.data, half,
        width, height, width, height,
    )  # fmt: skip
    if ret != 0:
        return None
    to_limited(pic, pic)
    pic.full_range = False
    return pic


def encode_jpeg(picture: Picture, quality: int = 85, subsampling: str = "422") -> bytes:
    """Encode a picture (BGR or I420) as a JPEG, to make camera-like input for benchmarks:
    USB webcams send 4:2:2 MJPEG, hence the default ``subsampling``."""
    import simplejpeg

    return bytes(
        simplejpeg.encode_jpeg(
            as_bgr(picture), quality=quality, colorspace="BGR", colorsubsampling=subsampling
        )
    )


class JpegReplaySource(Source):
    """Plays a list of JPEG frames as a camera would deliver them: decoded to I420 on the
    capture thread (the ``decode`` timing covers the range conversion), optionally paced at
    ``fps``, looped, and stopped after ``limit`` frames."""

    def __init__(
        self,
        jpegs: Sequence[bytes],
        *,
        fps: float,
        realtime: bool = False,
        loop: bool = False,
        limit: int | None = None,
    ) -> None:
        if not jpegs:
            raise SourceError("no JPEG frames to play")
        self._jpegs = jpegs
        self.fps = fps
        self.live = realtime
        self.loop = loop
        self.limit = limit
        self._seq = 0
        self._t0 = 0.0
        self.frame_count = None if loop else len(jpegs)

    def open(self) -> None:
        self.size = decode_jpeg(self._jpegs[0]).size
        self._seq = 0

    def read(self) -> Frame | None:
        i = self._seq
        if (i >= len(self._jpegs) and not self.loop) or (
            self.limit is not None and i >= self.limit
        ):
            return None
        if self.live:
            now = time.monotonic()
            if i == 0:
                self._t0 = now
            delay = self._t0 + i / self.fps - now
            if delay > 0:
                time.sleep(delay)
        t = time.perf_counter()
        image = decode_jpeg(self._jpegs[i % len(self._jpegs)])
        frame = Frame(image=image, seq=i, t_capture=time.monotonic(), pts=i / self.fps)
        frame.timings["decode"] = (time.perf_counter() - t) * 1e3
        self._seq += 1
        return frame

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"{len(self._jpegs)} MJPEG frames {self.size[0]}x{self.size[1]} at {self.fps:g} fps"
