"""Video files opened and decoded with PyAV (FFmpeg), for the file source and video backgrounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecam.errors import InputNotFoundError, SourceError, UnsupportedFormatError
from mattecam.frame import Image
from mattecam.imaging.yuv import I420, to_limited


def open_container(path: Path) -> Any:
    """Open a media file with PyAV, turning its errors into ones that name the fix."""
    import av

    if not path.exists():
        raise InputNotFoundError(f"video file {path} does not exist; check the path.")
    if not path.is_file():
        raise SourceError(f"{path} is not a regular file; give a video file or a camera.")
    try:
        container = av.open(str(path), mode="r")
    except PermissionError as e:
        raise SourceError(f"cannot read {path}: permission denied ({e}).") from e
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise UnsupportedFormatError(
            f"{path} is not a video FFmpeg can read ({e}); use a video file such as MP4, MKV, "
            "WebM or AVI."
        ) from e
    if not container.streams.video:
        container.close()
        raise UnsupportedFormatError(
            f"{path} has no video stream (no video frames to read); give a video file."
        )
    return container


def to_bgr(vf: Any) -> Image:
    """A decoded PyAV frame as BGR pixels.

    4:2:0 frames (nearly every video) are converted by OpenCV from their planes: about 0.6 ms
    at 720p against 2.9 ms through swscale's ``to_ndarray(format="bgr24")``. Both use BT.601
    limited range. Other layouts (full-range JPEG YUV, 4:4:4, RGB) go through swscale.
    """
    if vf.format.name == "yuv420p" and vf.width % 2 == 0 and vf.height % 2 == 0:
        return np.asarray(cv2.cvtColor(vf.to_ndarray(), cv2.COLOR_YUV2BGR_I420), np.uint8)
    return np.asarray(vf.to_ndarray(format="bgr24"), np.uint8)


#: ``vf.color_range`` values (FFmpeg's ``AVCOL_RANGE_*``).
LIMITED_RANGE, FULL_RANGE = 1, 2
#: The layouts whose planes are I420 as they are (the J one is full range).
_I420_FORMATS = ("yuv420p", "yuvj420p")
#: Pixel format names of RGB layouts (``rgb24``, ``bgra``, ``gbrp``, ``rgb48le``, ...).
_RGB_PREFIXES = ("rgb", "bgr", "argb", "abgr", "gbr", "0rgb", "0bgr")


def to_i420(vf: Any) -> I420:
    """A decoded PyAV frame as a limited-range I420 picture of even size.

    4:2:0 frames (nearly every video) are copied plane by plane into a new buffer: ~0.03 ms
    at 720p (the same as ``to_ndarray()``, which also copies; ``to_bgr`` takes 0.16 ms), and
    the picture is the decoder's own samples, untouched. Full-range ones (``yuvj420p``, or a
    ``color_range`` of JPEG: MJPEG files, some phone videos) are then converted to limited
    range in place (~0.15 ms). Other YUV layouts (4:2:2, 4:4:4, NV12, 10-bit) are brought to
    limited-range ``yuv420p`` by swscale first (0.1-0.6 ms at 720p), which keeps them to
    within a level, where a detour through BGR (0.3-2.2 ms) loses ~1 level on average and
    clips colours outside RGB. RGB frames do take that detour: ``bgr24`` then OpenCV is
    0.3 ms at 720p, against 1.1 ms for swscale's RGB to ``yuv420p``, for the same result.

    An odd side loses its last column or row (a crop: I420 needs even sides, and a 4:2:0
    frame's last chroma column or row then covers that one pixel alone).
    """
    name = vf.format.name
    if name.startswith(_RGB_PREFIXES):
        bgr = vf.to_ndarray(format="bgr24")
        h, w = bgr.shape[:2]
        if w < 2 or h < 2:
            raise SourceError(f"a {w}x{h} video frame is too small to process")
        return I420.from_bgr(bgr[: h - h % 2, : w - w % 2])
    full = vf.color_range == FULL_RANGE or name.startswith("yuvj")
    if name not in _I420_FORMATS:
        # Ranges given, or swscale would keep the samples' range (RGB's is ignored).
        vf = vf.reformat(
            format="yuv420p",
            src_color_range=FULL_RANGE if full else LIMITED_RANGE,
            dst_color_range=LIMITED_RANGE,
        )
        full = False
    w, h = vf.width, vf.height
    if w < 2 or h < 2:
        raise SourceError(f"a {w}x{h} video frame is too small to process")
    pic = I420(np.empty(((h // 2) * 3, w - w % 2), np.uint8), w - w % 2, h - h % 2)
    for plane, dst in zip(vf.planes, (pic.y, pic.u, pic.v), strict=True):
        # Rows of line_size bytes (padded for SIMD); only the first dst width count.
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        dst[:] = rows[: dst.shape[0], : dst.shape[1]]
    if full:
        to_limited(pic, pic)  # in place: the buffer is ours
    return pic
