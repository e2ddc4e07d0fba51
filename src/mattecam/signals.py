"""What SIGINT, SIGTERM and SIGHUP do to a run: stop cleanly, never half-write a file."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

#: The signals that stop a run: Ctrl-C, ``kill``/systemd, and a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: After this many stop signals mattecam gives up at once (see :class:`StopOnSignals`).
GIVE_UP_AFTER = 3


class StopOnSignals:
    """While active (a context manager, on the main thread), the stop signals ask the run to
    finish instead of killing the process, so that files are finalised and devices released.

    * Before :meth:`attach`: nothing is open that needs finishing, so a stop signal raises
      :class:`KeyboardInterrupt` where the main thread is (model loading, say).
    * The first signal after :meth:`attach` calls the attached ``stop`` (it only sets an
      event): the pipeline stops, every file gets the frames written so far and is
      finalised, devices are closed, and the CLI exits with ``128 + signal number``.
    * A second one is acknowledged and changes nothing: the handler never raises, so it
      cannot land inside the code that finalises a file.
    * The :data:`GIVE_UP_AFTER`-th calls the attached ``give_up`` (which deletes unfinished
      output files: it must be safe to call from a signal handler) and ends the process at
      once with ``os._exit``; the kernel closes every device.

    So after any number of signals an output file is either complete and playable or absent.
    Handlers are installed only on the main thread (Python allows no other); elsewhere this
    does nothing. A signal that was ignored when mattecam started (``nohup`` ignores SIGHUP)
    stays ignored. The previous handlers are restored on exit, unless a stop signal came:
    the handlers then stay until the process ends, so that it ends with one status.
    """

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received
        self.count = 0
        self._stop: Callable[[], None] | None = None
        self._give_up: Callable[[], None] = lambda: None
        self._old: dict[int, object] = {}

    @property
    def exit_code(self) -> int | None:
        """``128 + N`` for the first signal N received (the shell's convention), else None."""
        return None if self.signum is None else 128 + self.signum

    @property
    def name(self) -> str:
        """The first signal's name, like ``SIGTERM`` (empty when none came)."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    def attach(self, stop: Callable[[], None], give_up: Callable[[], None]) -> None:
        """From now on a signal calls ``stop`` (a clean stop) instead of raising; a signal
        that already came calls it at once."""
        self._stop, self._give_up = stop, give_up
        if self.signum is not None:
            stop()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        name = signal.Signals(signum).name
        if self._stop is None:
            raise KeyboardInterrupt(name)
        if self.count == 1:
            log.warning("%s received: stopping (finishing the output files)", name)
            self._stop()
        elif self.count < GIVE_UP_AFTER:
            log.warning(
                "%s received: still stopping; %d more and unfinished files are deleted",
                name,
                GIVE_UP_AFTER - self.count,
            )
        else:
            try:
                self._give_up()
            finally:
                os._exit(self.exit_code or 1)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # nohup, or a background job of a script: keep ignoring it
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.signum is not None:
            # The process is on its way out: a late signal must not kill it with another
            # status (Python's default SIGINT handling would); the third still gives up.
            return
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()
