"""A sink that discards frames, for measuring."""

from __future__ import annotations

import time

from mattecam.frame import Frame
from mattecam.sinks.base import Sink
from mattecam.sinks.convert import Converter, PixelFormat


class NullSink(Sink):
    """Counts frames and throws them away.

    With a pixel format (``-o null:yuyv``) it first converts each frame as a virtual camera
    sink would, so benchmarks include that cost (recorded as the ``convert`` stage).
    """

    def __init__(self, pixel_format: PixelFormat | None = None) -> None:
        self.pixel_format = pixel_format
        self._converter: Converter | None = None

    def open(self, size: tuple[int, int], fps: float) -> None:
        self.size = size
        if self.pixel_format is not None:
            self._converter = Converter(self.pixel_format, *size)

    def write(self, frame: Frame) -> None:
        if self._converter is not None:
            t = time.perf_counter()
            self._converter.convert(frame.image)
            frame.timings["convert"] = (time.perf_counter() - t) * 1e3
        self.frames_written += 1

    def close(self) -> None:
        self._converter = None

    def describe(self) -> str:
        fmt = f", converted to {self.pixel_format.name.upper()}" if self.pixel_format else ""
        return f"null (frames discarded{fmt})"
