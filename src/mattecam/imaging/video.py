"""Video files opened and decoded with PyAV (FFmpeg), for the file source and video backgrounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecam.errors import InputNotFoundError, SourceError, UnsupportedFormatError
from mattecam.frame import Image


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
