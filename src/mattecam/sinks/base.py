"""The sink contract: where composited frames go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from mattecam.frame import Frame


class Sink(ABC):
    """An output: a file, a preview window, a virtual camera, or nothing.

    Lifecycle: :meth:`check` (cheap, before the source is made; may be skipped), then
    :meth:`open` once from the main thread (it may raise a
    :class:`~mattecam.errors.MattecamError` naming the fix, and must then leave nothing
    behind); :meth:`write` from the output thread only; then exactly one of :meth:`close`
    (finish normally: finalise files) or :meth:`abort` (an error happened: remove partial
    output) from the main thread once the output thread has stopped. Both are idempotent.
    """

    #: Whether the sink wants frames on a steady clock (a window, a virtual camera) rather
    #: than once per processed frame (a file written from a file, in batch mode).
    live = False
    #: Whether the sink must be fed a placeholder picture until the first real frame (and
    #: while the camera is paused): a virtual camera whose consumers must never stall.
    wants_placeholder = False
    #: Set by the sink when the user asked it to stop (e.g. closed the preview window).
    stop_requested = False
    frames_written = 0

    @property
    def viewers(self) -> int | None:
        """How many consumers watch this output right now; None when unknown (always on)."""
        return None

    def check(self) -> None:
        """Cheap pre-flight: raise the error :meth:`open` would raise for a missing system
        part (a library, a daemon), without acquiring anything. Called from the main thread
        by :func:`mattecam.app.build_pipeline` for every sink before the source is made, so
        a setup problem is reported before any camera is opened. The default checks nothing;
        :meth:`open` must still report what this misses."""
        return

    @abstractmethod
    def open(self, size: tuple[int, int], fps: float) -> None:
        """Prepare for ``size`` = (width, height) frames at ``fps`` frames per second."""

    @abstractmethod
    def write(self, frame: Frame) -> None:
        """Output one frame of the size given to :meth:`open`.

        Its picture is I420 (limited range, even sizes) from the pipeline, or BGR from
        tests and other callers: a sink takes both, and never modifies the picture (the
        same one goes to every sink, and may be written again as a placeholder).
        """

    @abstractmethod
    def close(self) -> None:
        """Finish: flush and release. Idempotent."""

    def abort(self) -> None:
        """Release after an error, removing anything half-written. Idempotent."""
        self.close()

    def discard_unfinished(self) -> None:
        """Delete the unfinished output, if any, at once: called from a signal handler just
        before the process ends (the user gave up waiting), possibly while another method
        of this sink runs on the same thread. Only unlinking a file is safe there; sinks
        without files do nothing."""
        return

    def describe(self) -> str:
        """One line for logs."""
        return type(self).__name__

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
