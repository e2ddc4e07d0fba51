"""Video files decoded with PyAV (FFmpeg), optionally paced by their own frame rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecam.compositing.blend import cover_fit
from mattecam.errors import InputNotFoundError, SourceError, UnsupportedFormatError
from mattecam.frame import Frame, Image
from mattecam.sources.base import Source, fill_size

log = logging.getLogger(__name__)


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


class FileSource(Source):
    """Frames of a video file.

    Args:
        path: the file.
        realtime: pace frames by their timestamps (live mode); otherwise as fast as decoded.
        loop: start again at the end instead of ending.
        size: (width, height) to deliver; frames are scaled to cover it and centre-cropped.
            None keeps the file's size.
    """

    def __init__(
        self,
        path: Path,
        *,
        realtime: bool = False,
        loop: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.live = realtime
        self.loop = loop
        self._want_size = size
        self._container: Any = None
        self._frames: Iterator[tuple[Image, float | None]] | None = None
        self._pending: tuple[Image, float | None] | None = None
        self._seq = 0
        self._t0 = 0.0
        self._offset = 0.0  # media time added for each loop
        self._last_pts = 0.0

    def open(self) -> None:
        self._container = open_container(self.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.frame_count = int(stream.frames) or None
        self._frames = self._decode()
        first = next(self._frames, None)
        if first is None:
            self.close()
            raise UnsupportedFormatError(
                f"{self.path} contains no video frames (empty or damaged file)."
            )
        self._pending = first
        h, w = first[0].shape[:2]
        self.size = fill_size(self._want_size, (w, h))
        log.info("input %s: %dx%d at %.3g fps", self.path, w, h, self.fps)

    def _decode(self) -> Iterator[tuple[Image, float | None]]:
        container = self._container
        stream = container.streams.video[0]
        while True:
            got = False
            try:
                for vf in container.decode(stream):
                    got = True
                    pts = float(vf.time) if vf.time is not None else None
                    yield to_bgr(vf), pts
            except Exception as e:  # PyAV raises its own FFmpegError subclasses mid-stream
                raise SourceError(f"error decoding {self.path}: {e}") from e
            if not (got and self.loop):
                return
            container.seek(0)
            self._offset = self._last_pts + 1.0 / self.fps

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError("FileSource.read() before open()")
        t = time.perf_counter()
        item = self._pending or next(self._frames, None)
        self._pending = None
        if item is None:
            return None
        image, pts = item
        if (image.shape[1], image.shape[0]) != self.size:
            image = cover_fit(image, *self.size)
        decode_ms = (time.perf_counter() - t) * 1e3
        media_t = self._offset + (pts if pts is not None else self._seq / self.fps)
        self._last_pts = media_t
        if self.live:
            now = time.monotonic()
            if self._seq == 0:
                self._t0 = now - media_t
            delay = self._t0 + media_t - now
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:
                # Far behind (after a pause, or a slow reader): re-anchor instead of bursting.
                self._t0 = now - media_t
        frame = Frame(image=image, seq=self._seq, t_capture=time.monotonic(), pts=media_t)
        frame.timings["decode"] = decode_ms
        self._seq += 1
        return frame

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def describe(self) -> str:
        return f"file {self.path}: {self.size[0]}x{self.size[1]} at {self.fps:.3g} fps"
