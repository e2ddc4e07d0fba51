"""YUV 4:2:0 pictures: the layout frames keep from the decoder to the virtual camera.

A webcam's MJPEG is YUV, H.264 files are YUV, and every virtual-camera format but RGB24 is
YUV; BGR exists only for the model's small input and for the consumers that need it (the
preview window, RGB24 outputs). Keeping frames in :class:`I420` halves the full-resolution
work: the blend runs on Y at full resolution and on chroma at a quarter of it, and an I420
output is written as it is.

Colour: BT.601 matrix (what V4L2 consumers assume at these sizes), limited range (Y 16-235,
chroma 16-240) unless ``full_range`` says otherwise. JPEG planes are full range and are
converted once, where they are decoded. OpenCV's ``COLOR_BGR2YUV_I420`` and
``COLOR_YUV2BGR_I420`` use the same matrix and range, so a picture converted either way
matches the BGR path to within a level of rounding.
"""

from __future__ import annotations

from typing import TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from mattecam.imaging import libyuv
from mattecam.imaging.resize import shrink

Plane = NDArray[np.uint8]
"""One image plane: uint8, shape (height, width)."""

#: Full range to limited range: Y' = 16 + Y * 219/255, C' = 128 + (C - 128) * 224/255.
_Y_SCALE, _Y_OFFSET = 219.0 / 255.0, 16.0
_C_SCALE, _C_OFFSET = 224.0 / 255.0, 128.0 * (1.0 - 224.0 / 255.0)


class I420:
    """A YUV 4:2:0 picture in one C-contiguous buffer: the Y plane, then U, then V (the
    I420/YU12 layout, so an I420 output is ``data`` as it is).

    Attributes:
        data: uint8, shape (height * 3 // 2, width).
        width, height: even pixel sizes.
        full_range: False for BT.601 limited range (Y 16-235, what pipeline frames carry),
            True for full range (JPEG's planes, before :meth:`limited`).

    Pictures that travel in frames are never modified after they are handed on.
    """

    __slots__ = ("data", "full_range", "height", "width")
    matrix = "bt601"

    def __init__(self, data: Plane, width: int, height: int, *, full_range: bool = False) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"I420 needs a positive even width and height, got {width}x{height}")
        if (
            data.shape != (height * 3 // 2, width)
            or data.dtype != np.uint8
            or not data.flags.c_contiguous
        ):
            raise ValueError(
                f"I420 {width}x{height} needs a C-contiguous uint8 buffer of shape "
                f"{(height * 3 // 2, width)}, got {data.dtype} {data.shape}"
            )
        self.data = data
        self.width = width
        self.height = height
        self.full_range = full_range

    @classmethod
    def empty(cls, width: int, height: int) -> I420:
        """An uninitialised limited-range picture."""
        return cls(np.empty((height * 3 // 2, width), np.uint8), width, height)

    @classmethod
    def from_bgr(cls, image: NDArray[np.uint8]) -> I420:
        """Convert a BGR image of even size (~0.15 ms at 720p)."""
        h, w = image.shape[:2]
        if w % 2 or h % 2:
            raise ValueError(f"a {w}x{h} picture cannot be 4:2:0; its sides must be even")
        data = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), np.uint8)
        return cls(data, w, h)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def y(self) -> Plane:
        return self.data[: self.height]

    @property
    def u(self) -> Plane:
        n, q = self.width * self.height, self.width * self.height // 4
        return self.data.reshape(-1)[n : n + q].reshape(self.height // 2, self.width // 2)

    @property
    def v(self) -> Plane:
        n, q = self.width * self.height, self.width * self.height // 4
        return self.data.reshape(-1)[n + q :].reshape(self.height // 2, self.width // 2)

    @property
    def chroma(self) -> Plane:
        """U and V together, as rows of the buffer (for operations on both at once)."""
        return self.data[self.height :]

    def limited(self) -> I420:
        """This picture in limited range: itself when it is, else a converted copy."""
        if not self.full_range:
            return self
        out = I420.empty(self.width, self.height)
        to_limited(self, out)
        return out

    def to_bgr(self) -> NDArray[np.uint8]:
        """A BGR copy (~0.15 ms at 720p)."""
        return np.asarray(cv2.cvtColor(self.limited().data, cv2.COLOR_YUV2BGR_I420), np.uint8)

    def copy(self) -> I420:
        return I420(self.data.copy(), self.width, self.height, full_range=self.full_range)

    def __repr__(self) -> str:
        rng = "full" if self.full_range else "limited"
        return f"I420({self.width}x{self.height}, {rng} range)"


Picture: TypeAlias = "NDArray[np.uint8] | I420"
"""What a frame carries: a BGR image (h, w, 3) or an :class:`I420` picture."""


def as_i420(picture: Picture) -> I420:
    """The picture as limited-range I420 (converted when it is BGR or full range)."""
    if isinstance(picture, I420):
        return picture.limited()
    return I420.from_bgr(picture)


def as_bgr(picture: Picture) -> NDArray[np.uint8]:
    """The picture as BGR (converted when it is I420)."""
    if isinstance(picture, I420):
        return picture.to_bgr()
    return picture


def picture_size(picture: Picture) -> tuple[int, int]:
    """(width, height) of either kind of picture."""
    if isinstance(picture, I420):
        return picture.size
    h, w = picture.shape[:2]
    return w, h


def to_limited(src: I420, dst: I420) -> None:
    """Write full-range ``src`` into ``dst`` in limited range (two SIMD passes, ~0.15 ms
    at 720p)."""
    cv2.convertScaleAbs(src.y, dst=dst.y, alpha=_Y_SCALE, beta=_Y_OFFSET)
    cv2.convertScaleAbs(src.chroma, dst=dst.chroma, alpha=_C_SCALE, beta=_C_OFFSET)


def mirror(src: I420) -> I420:
    """A left-right mirrored copy."""
    out = I420(np.empty_like(src.data), src.width, src.height, full_range=src.full_range)
    lib = libyuv.load()
    w, h = src.width, src.height
    if lib is not None:
        lib.I420Mirror(*ptrs(src), *ptrs(out), w, h)
    else:
        for a, b in ((src.y, out.y), (src.u, out.u), (src.v, out.v)):
            cv2.flip(a, 1, dst=b)
    return out


def fit(src: I420, width: int, height: int) -> I420:
    """Scale to cover ``width`` x ``height`` keeping the aspect ratio, then centre-crop
    (the I420 twin of :func:`~mattecam.imaging.resize.cover_fit`); ``src`` itself when it
    already has that size."""
    if src.size == (width, height):
        return src
    iw, ih = src.size
    scale = max(width / iw, height / ih)
    sw, sh = max(width, round(iw * scale)), max(height, round(ih * scale))
    x, y = (sw - width) // 4 * 2, (sh - height) // 4 * 2  # even, so chroma stays aligned
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = I420.empty(width, height)
    out.full_range = src.full_range
    for plane, dst, k in ((src.y, out.y, 1), (src.u, out.u, 2), (src.v, out.v, 2)):
        big = cv2.resize(plane, (sw // k, sh // k), interpolation=interp)
        dst[:] = big[y // k : (y + height) // k, x // k : (x + width) // k]
    return out


def model_input(
    src: I420, rect: tuple[int, int, int, int], width: int, height: int
) -> NDArray[np.uint8]:
    """The part ``rect`` = (x, y, w, h) of the picture, shrunk to ``width`` x ``height``
    as BGR: what a segmentation model takes.

    Only that part (widened to even bounds) is converted to BGR, then shrunk with
    :func:`~mattecam.imaging.resize.shrink`: exactly what the model saw when frames were
    BGR, so the matte is unchanged (0.4 ms for a whole 720p frame, less on a crop).
    Shrinking each plane and converting the small result costs 0.24 ms, but the model is
    sensitive to the colour rounding that changes at edges: on the ground-truth clips IoU
    moved by -0.015 to +0.005 (``docs/performance.md``)."""
    x, y, cw, ch = rect
    pic = src.limited()
    if rect == (0, 0, pic.width, pic.height):
        return shrink(pic.to_bgr(), width, height)
    x0, y0 = x - x % 2, y - y % 2
    x1, y1 = x + cw + (x + cw) % 2, y + ch + (y + ch) % 2
    part = I420.empty(x1 - x0, y1 - y0)
    part.y[:] = pic.y[y0:y1, x0:x1]
    part.u[:] = pic.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
    part.v[:] = pic.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
    bgr = part.to_bgr()
    return shrink(bgr[y - y0 : y - y0 + ch, x - x0 : x - x0 + cw], width, height)


def ptrs(pic: I420) -> tuple[int, int, int, int, int, int]:
    """(y, stride, u, stride, v, stride) for libyuv."""
    w = pic.width
    return (pic.y.ctypes.data, w, pic.u.ctypes.data, w // 2, pic.v.ctypes.data, w // 2)


def pack_422(src: I420, out: NDArray[np.uint8], order: str) -> None:
    """Interleave ``src`` into packed 4:2:2 ``out`` (``width * height * 2`` bytes), each
    chroma row serving two luma rows; ``order`` is ``"yuyv"`` or ``"uyvy"``."""
    lib = libyuv.load()
    w, h = src.size
    if lib is not None:
        fn = lib.I420ToYUY2 if order == "yuyv" else lib.I420ToUYVY
        fn(*ptrs(src), out.ctypes.data, w * 2, w, h)
        return
    cu = np.repeat(src.u, 2, axis=0)
    cv_ = np.repeat(src.v, 2, axis=0)
    y = src.y.reshape(h, w // 2, 2)
    packed = out.reshape(h, w // 2, 4)
    mapping = [0, 0, 1, 2, 2, 1, 3, 3] if order == "yuyv" else [0, 1, 1, 3, 2, 0, 3, 2]
    cv2.mixChannels([y, cu, cv_], [packed], mapping)


def pack_nv12(src: I420, out: NDArray[np.uint8]) -> None:
    """Write ``src`` as NV12 (Y, then interleaved UV) into ``out`` (``w * h * 3 / 2`` bytes)."""
    w, h = src.size
    lib = libyuv.load()
    if lib is not None:
        lib.I420ToNV12(*ptrs(src), out.ctypes.data, w, out[w * h :].ctypes.data, w, w, h)
        return
    out[: w * h] = src.y.reshape(-1)
    cv2.merge([src.u, src.v], dst=out[w * h :].reshape(h // 2, w // 2, 2))


def unpack_yuyv(raw: NDArray[np.uint8], width: int, height: int) -> I420:
    """A YUYV (YUY2) camera frame as I420: chroma rows averaged in pairs (4:2:2 -> 4:2:0)."""
    w, h = width, height
    out = I420.empty(w, h)
    raw = np.ascontiguousarray(raw.reshape(-1)[: w * h * 2])
    lib = libyuv.load()
    if lib is not None:
        lib.YUY2ToI420(raw.ctypes.data, w * 2, *ptrs(out), w, h)
        return out
    pairs = raw.reshape(h, w // 2, 4)
    out.y.reshape(h, w // 2, 2)[:] = pairs[:, :, 0::2]
    for plane, i in ((out.u, 1), (out.v, 3)):
        cv2.resize(
            np.ascontiguousarray(pairs[:, :, i]),
            (w // 2, h // 2),
            dst=plane,
            interpolation=cv2.INTER_AREA,
        )
    return out
