"""libyuv (Debian's ``libyuv0``) through ctypes: SIMD YUV blending, packing and MJPEG decoding.

Optional: every function here has an OpenCV fallback in :mod:`mattecam.imaging.yuv`, used
when the library is missing or ``MATTECAM_LIBYUV=0`` is set (the tests run both). ctypes
releases the GIL for the duration of each call, like OpenCV does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from typing import Any

#: The functions mattecam calls, with their argument types (pointers, strides and sizes).
_P = ctypes.c_void_p
_I = ctypes.c_int
_SIGNATURES: dict[str, list[Any]] = {
    # dst = src0 * alpha + src1 * (255 - alpha), chroma alpha subsampled 2x2.
    "I420Blend": [*[_P, _I] * 10, _I, _I],
    "I420Mirror": [_P, _I, _P, _I, _P, _I, _P, _I, _P, _I, _P, _I, _I, _I],
    "I420ToYUY2": [_P, _I, _P, _I, _P, _I, _P, _I, _I, _I],
    "I420ToUYVY": [_P, _I, _P, _I, _P, _I, _P, _I, _I, _I],
    "I420ToNV12": [_P, _I, _P, _I, _P, _I, _P, _I, _P, _I, _I, _I],
    "YUY2ToI420": [_P, _I, _P, _I, _P, _I, _P, _I, _I, _I],
    # (jpeg, size, y, stride, u, stride, v, stride, src w, src h, dst w, dst h)
    "MJPGToI420": [ctypes.c_char_p, ctypes.c_size_t, _P, _I, _P, _I, _P, _I, _I, _I, _I, _I],
    "MJPGSize": [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_I), ctypes.POINTER(_I)],
}


@cache
def load() -> Any | None:
    """The library with its signatures declared, or None when it is not installed or
    ``MATTECAM_LIBYUV=0`` turns it off (read once per process)."""
    if os.environ.get("MATTECAM_LIBYUV", "1") == "0":
        return None
    for name in ("libyuv.so.0", ctypes.util.find_library("yuv")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            for fn, argtypes in _SIGNATURES.items():
                f = getattr(lib, fn)
                f.argtypes = argtypes
                f.restype = _I
        except AttributeError:  # a build without the MJPEG or blend functions
            continue
        return lib
    return None


def available() -> bool:
    """Whether the SIMD paths are in use."""
    return load() is not None
