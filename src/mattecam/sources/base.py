"""The source contract: where frames come from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from mattecam.frame import Frame


class Source(ABC):
    """A camera or a video file.

    Lifecycle: :meth:`open` (may raise a :class:`~mattecam.errors.MattecamError` naming the
    fix), then :meth:`read` repeatedly from one thread (the capture thread), then
    :meth:`close`, which is idempotent and may be called from any thread after reading stopped.
    A camera may be opened again after close (the pipeline releases it when nobody watches).

    After :meth:`open`, :attr:`size` is the (width, height) of the frames :meth:`read`
    returns and :attr:`fps` their nominal rate.
    """

    size: tuple[int, int] = (0, 0)
    fps: float = 30.0
    #: True for sources that produce frames in real time (cameras, paced files).
    live: bool = False
    #: Number of frames if known in advance (files), else None.
    frame_count: int | None = None
    #: Close the source while nobody watches the output (a camera: its light goes off).
    release_when_idle: bool = False

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None at the end of the input. Blocks at most about a frame
        interval (a camera waits for its next frame; a paced file sleeps until its time)."""

    @abstractmethod
    def close(self) -> None:
        """Release the device or file. Idempotent."""

    def describe(self) -> str:
        """One line for logs: what was opened and what it delivers."""
        return f"{type(self).__name__} {self.size[0]}x{self.size[1]} at {self.fps:g} fps"

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def fill_size(want: tuple[int, int] | None, native: tuple[int, int]) -> tuple[int, int]:
    """Complete a requested (width, height) whose missing side is 0 from the native aspect.

    The computed side is rounded to an even number (4:2:0 video formats need it).
    """
    if want is None:
        return native
    w, h = want
    nw, nh = native
    if w and h:
        return w, h
    if w:
        return w, max(2, round(w * nh / nw / 2) * 2)
    if h:
        return max(2, round(h * nw / nh / 2) * 2), h
    return native
