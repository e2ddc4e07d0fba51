"""A sink that discards frames, for measuring."""

from __future__ import annotations

from mattecam.frame import Frame
from mattecam.sinks.base import Sink


class NullSink(Sink):
    """Counts frames and throws them away."""

    def open(self, size: tuple[int, int], fps: float) -> None:
        self.size = size

    def write(self, frame: Frame) -> None:
        self.frames_written += 1

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "null (frames discarded)"
