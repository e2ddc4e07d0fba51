"""The newest frame written to the outputs, kept for the control page's preview and pause."""

from __future__ import annotations

from mattecam.frame import Frame, Image
from mattecam.sinks.base import Sink


class LatestFrameSink(Sink):
    """Keeps the newest frame written to the outputs, for the control page's preview and a
    "freeze" pause. It is an extra output of the pipeline that costs one reference per frame.

    :meth:`write` runs on the output thread; :meth:`latest` may be called from any thread
    (replacing one reference is atomic, and written frames are never modified afterwards).
    It never changes the run's mode (``live`` is False), takes the placeholder like a
    virtual camera so the preview shows what a call sees, and reports no viewers of its own,
    so it neither keeps an unwatched camera running nor hides one that is watched.
    """

    live = False
    wants_placeholder = True

    def __init__(self) -> None:
        self._image: Image | None = None
        self._live_image: Image | None = None
        self.size: tuple[int, int] | None = None

    @property
    def viewers(self) -> int | None:
        return 0

    def open(self, size: tuple[int, int], fps: float) -> None:
        self.size = size

    def write(self, frame: Frame) -> None:
        self._image = frame.image
        if frame.seq >= 0:  # not a placeholder or a pause picture
            self._live_image = frame.image
        self.frames_written += 1

    def latest(self) -> Image | None:
        """The newest frame written (BGR), or None before the first."""
        return self._image

    def latest_live(self) -> Image | None:
        """The newest camera frame written (no placeholder, no pause picture), or None."""
        return self._live_image

    def close(self) -> None:
        self._image = self._live_image = None

    def describe(self) -> str:
        return "latest frame (for the control page)"
