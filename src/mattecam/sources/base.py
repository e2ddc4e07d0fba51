"""The source contract: where frames come from."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from types import TracebackType

from mattecam.frame import Frame

log = logging.getLogger(__name__)


class Source(ABC):
    """A camera or a video file.

    Lifecycle: :meth:`open` (may raise a :class:`~mattecam.errors.MattecamError` naming the
    fix), then :meth:`read` repeatedly from one thread (the capture thread), then
    :meth:`close`, which is idempotent and may be called from any thread after reading stopped.
    A camera may be opened again after close (the pipeline releases it when nobody watches).

    After :meth:`open`, :attr:`size` is the (width, height) of the frames :meth:`read`
    returns (always even) and :attr:`fps` their nominal rate. Each frame's image is an
    :class:`~mattecam.imaging.yuv.I420` picture in limited range: cameras and files are
    YUV already, so no full-size BGR is made on the way in.
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


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) rounded down to even numbers (at least 2).

    Frames are I420: 4:2:0 chroma has one sample per 2x2 block of pixels, so both sides of
    every frame must be even. An odd side loses its last column or row (a crop, not a
    rescale, so nothing else moves by a fraction of a pixel).
    """
    w, h = size
    return max(2, w - w % 2), max(2, h - h % 2)


def fill_size(want: tuple[int, int] | None, native: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) a source delivers: ``want`` with a missing side (0) completed from
    the native aspect, or ``native`` when nothing is asked; always even (see
    :func:`even_size`), as I420 frames need.
    """
    if want is None:
        return even_size(native)
    w, h = want
    nw, nh = native
    if w and h:
        return even_size((w, h))
    if w:
        return even_size((w, max(2, round(w * nh / nw / 2) * 2)))
    if h:
        return even_size((max(2, round(h * nw / nh / 2) * 2), h))
    return even_size(native)


def delivered_size(
    want: tuple[int, int] | None, native: tuple[int, int], what: object
) -> tuple[int, int]:
    """:func:`fill_size`, with one warning naming ``what`` (the file or camera) when an odd
    side had to be rounded down: the native size when nothing (or only 0s) is asked, else
    the requested size. A native odd side under an explicit even request needs no warning:
    it costs one column or row before scaling."""
    size = fill_size(want, native)
    asked = want if want is not None and (want[0] or want[1]) else None
    if asked is None and native[0] % 2 + native[1] % 2:
        log.warning(
            "%s: %dx%d is odd; processing %dx%d (4:2:0 needs even sizes)", what, *native, *size
        )
    elif asked is not None and asked[0] % 2 + asked[1] % 2:
        shown = "x".join(str(s) if s else "auto" for s in asked)
        log.warning(
            "%s: the requested size %s is odd; delivering %dx%d (4:2:0 needs even sizes)",
            what,
            shown,
            *size,
        )
    return size
