"""The live output's cadence: when to write a new frame, repeat the last one, or wait."""

from __future__ import annotations

import math


class OutputClock:
    """Decides the live output's writes; the caller does the waiting and the writing.

    Pure bookkeeping: no threads, no sleeping, no clock of its own. Every method takes
    ``now`` (seconds on any monotonic clock; the pipeline passes :func:`time.monotonic`),
    the queries never change state, and the caller reports each write it made.

    The rules, with ``period`` the output frame interval:

    * **New frames** are written as soon as they are ready, but no sooner than half a period
      after the previous write (:meth:`hold`): not much faster than the frame rate, yet no
      added latency. A frame that arrives while another is held supersedes it (the caller
      takes the newest frame once the hold ends).
    * **Repeats**: 1.25 periods after a new frame without another one, the last frame (or the
      placeholder before the first frame) is written again, then once per period
      (:meth:`until_repeat`). The quarter period of grace keeps ordinary jitter from causing
      a repeat.
    * **Pause**: the pause picture is written once per period (:meth:`until_pause`), and a
      repeat after the pause ends comes a period after the last pause picture.
    * **Catch-up**: a repeat or pause write that comes late (a slow sink, a blocked thread,
      or the first write ever) is booked on the schedule, but never more than one period
      behind ``now``: at most one extra write follows at once, never a burst of every
      missed one.

    Before any write every query answers 0 (due now). Which picture fills a repeat (the last
    frame, the placeholder, or nothing) is the caller's business; so is forgetting the last
    frame when the output goes idle or resumes after a pause.

    How the output loop drives it, each turn:

    1. paused: wait :meth:`until_pause`; when it is 0 write the pause picture and call
       :meth:`wrote_pause`;
    2. otherwise wait for a new frame for at most :meth:`until_repeat` (when there is a
       picture to repeat);
    3. a new frame came: wait :meth:`hold`, take a newer frame if one came meanwhile, call
       :meth:`wrote_new` and write it;
    4. none came and :meth:`until_repeat` is 0: call :meth:`wrote_repeat` and write the fill.

    Not thread-safe: it belongs to the one thread that writes the output.
    """

    def __init__(self, period: float) -> None:
        if not (period > 0 and math.isfinite(period)):
            raise ValueError(f"the output frame interval must be positive, not {period!r}")
        self.period = period
        self.min_gap = 0.5 * period  # the least time between two writes of new frames
        self.grace = 1.25 * period  # how long without a new frame before a repeat
        self._last_write = -math.inf  # when the last write was booked
        self._gap = period  # from it to the next repeat: grace after a new frame, else period

    def until_repeat(self, now: float) -> float:
        """Seconds from ``now`` until the last frame (or placeholder) is due again; 0: due."""
        return max(self._last_write + self._gap - now, 0.0)

    def until_pause(self, now: float) -> float:
        """Seconds from ``now`` until the pause picture is due; 0: due."""
        return max(self._last_write + self.period - now, 0.0)

    def hold(self, now: float) -> float:
        """Seconds a new frame ready at ``now`` must wait before it is written; 0: write it."""
        return max(self._last_write + self.min_gap - now, 0.0)

    def wrote_new(self, now: float) -> None:
        """A new frame is written at ``now``; it is repeated after :attr:`grace`."""
        self._last_write = now
        self._gap = self.grace

    def wrote_repeat(self, now: float) -> None:
        """The last frame or the placeholder is written again at ``now`` (it was due)."""
        self._book(self._last_write + self._gap, now)

    def wrote_pause(self, now: float) -> None:
        """The pause picture is written at ``now`` (it was due)."""
        self._book(self._last_write + self.period, now)

    def _book(self, due: float, now: float) -> None:
        # On time, the next write is a period after this one was due; late, a period after
        # ``now - period``: the schedule never lags more than one write behind.
        self._last_write = max(due, now - self.period)
        self._gap = self.period
