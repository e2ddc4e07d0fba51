"""The newest frame written to the outputs, kept for the control page's preview and pause."""

from __future__ import annotations

from mattecam.frame import Frame, Image
from mattecam.imaging.yuv import Picture, as_bgr
from mattecam.sinks.base import Sink


class _BgrCache:
    """The BGR of the picture last asked for, as one (picture, BGR) tuple: replaced
    atomically, so any thread may call :meth:`get` (two at once may both convert)."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[Picture, Image] | None = None

    def get(self, picture: Picture | None) -> Image | None:
        if picture is None:
            return None
        entry = self._entry
        if entry is not None and entry[0] is picture:
            return entry[1]
        bgr = as_bgr(picture)
        self._entry = (picture, bgr)
        return bgr

    def clear(self) -> None:
        self._entry = None


class LatestFrameSink(Sink):
    """Keeps the newest frame written to the outputs, for the control page's preview and a
    "freeze" pause. It is an extra output of the pipeline that costs one reference per frame:
    the picture is kept as it is written (I420 from the pipeline), and converted to BGR only
    when asked for, at the asker's rate (a page polling the preview), never on the output
    thread.

    :meth:`write` runs on the output thread; :meth:`latest` and :meth:`latest_live` may be
    called from any thread: replacing one reference is atomic, written frames are never
    modified afterwards, and the BGR conversion of the picture last asked for is cached as
    one (picture, BGR) tuple, also replaced atomically (two threads asking at once may
    both convert; either result is kept). Repeated calls for the same picture return the
    same array, which callers must not modify (the control server caches its JPEG on that
    identity). It never changes the run's mode (``live`` is False), takes the placeholder
    like a virtual camera so the preview shows what a call sees, and reports no viewers of
    its own, so it neither keeps an unwatched camera running nor hides one that is watched.
    """

    live = False
    wants_placeholder = True

    def __init__(self) -> None:
        self._picture: Picture | None = None
        self._live_picture: Picture | None = None
        # One cache per accessor: they may ask for different pictures (a pause picture and
        # the last live one) and must not evict each other.
        self._bgr = _BgrCache()
        self._live_bgr = _BgrCache()
        self.size: tuple[int, int] | None = None

    @property
    def viewers(self) -> int | None:
        return 0

    def open(self, size: tuple[int, int], fps: float) -> None:
        self.size = size

    def write(self, frame: Frame) -> None:
        self._picture = frame.image
        if frame.seq >= 0:  # not a placeholder or a pause picture
            self._live_picture = frame.image
        self.frames_written += 1

    def latest(self) -> Image | None:
        """The newest frame written, as BGR (converted at the first call for each frame),
        or None before the first."""
        return self._bgr.get(self._picture)

    def latest_live(self) -> Image | None:
        """The newest camera frame written (no placeholder, no pause picture), as BGR, or
        None."""
        return self._live_bgr.get(self._live_picture)

    def close(self) -> None:
        self._picture = self._live_picture = None
        self._bgr.clear()
        self._live_bgr.clear()

    def describe(self) -> str:
        return "latest frame (for the control page)"
