"""Counters and timing records shared by the pipeline threads, and the one summary of them
(rates, CPU, latency, drops) that the status line, the control API and bench report."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def percentile(values: list[float] | deque[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Every counter at one moment (``t``: :func:`time.monotonic` seconds; ``cpu``: the
    process's CPU seconds, :func:`time.process_time`), for rates between two snapshots."""

    t: float
    cpu: float = 0.0
    captured: int = 0
    processed: int = 0
    written: int = 0  # frame writes, repeats included
    repeats: int = 0
    placeholders: int = 0
    dropped_before_process: int = 0
    dropped_before_output: int = 0
    recorded: int = 0  # latencies recorded so far (never wraps, unlike the window)

    @property
    def dropped(self) -> int:
        """Frames dropped anywhere: before processing and before output."""
        return self.dropped_before_process + self.dropped_before_output


@dataclass(frozen=True)
class Summary:
    """What happened between two snapshots: rates, CPU and the latencies recorded.

    Counters (``end.written``, ``end.dropped``...) are totals since the start;
    :attr:`latency_ms` holds the capture-to-write latencies (ms, oldest first) that
    :meth:`Metrics.summary` selected.
    """

    start: Snapshot
    end: Snapshot
    latency_ms: list[float]

    @property
    def seconds(self) -> float:
        """The window's length (never zero, so rates stay finite)."""
        return max(self.end.t - self.start.t, 1e-6)

    @property
    def fps_in(self) -> float:
        """Frames captured per second."""
        return (self.end.captured - self.start.captured) / self.seconds

    @property
    def fps_processed(self) -> float:
        """Frames processed per second."""
        return (self.end.processed - self.start.processed) / self.seconds

    @property
    def fps_out(self) -> float:
        """Frames written per second, repeats included."""
        return (self.end.written - self.start.written) / self.seconds

    @property
    def cpu_percent(self) -> float:
        """The whole process's CPU time over the window, in % of one core."""
        return 100.0 * (self.end.cpu - self.start.cpu) / self.seconds

    def latency(self, q: float) -> float:
        """The q-th percentile (0..100) of :attr:`latency_ms`; NaN when none."""
        return percentile(self.latency_ms, q)

    def status_line(self) -> str:
        """``in/out fps, drops, latency``: the ``-v`` status line."""
        return (
            f"in {self.fps_in:.1f} fps, "
            f"processed {self.fps_processed:.1f} fps, "
            f"out {self.fps_out:.1f} fps | "
            f"dropped {self.end.dropped_before_process}+{self.end.dropped_before_output}, "
            f"repeated {self.end.repeats} | "
            f"latency p50 {self.latency(50):.1f} ms p95 {self.latency(95):.1f} ms"
        )


#: The latencies a status summarises: the newest this many (about 8 s at 30 fps), however
#: short its rate window, so percentiles stay steady.
STATUS_LATENCIES = 256


class Metrics:
    """Frame counters, per-stage timings and capture-to-write latency.

    Each counter is written by one thread only (capture, process or output) and read by
    others; reads of a Python int are atomic, so no lock is needed for them. The bounded
    deques keep the last ``window`` samples, so memory does not grow with run length; the
    lock guards them (and the count of records) against a reader iterating while the output
    thread appends.

    ``clock`` and ``cpu_clock`` (seconds) time the snapshots; tests pass their own.
    """

    def __init__(
        self,
        window: int = 4096,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.window = window
        self._clock = clock
        self._cpu_clock = cpu_clock
        self.captured = 0
        self.processed = 0
        self.written = 0  # frame writes, repeats included
        self.repeats = 0  # writes of an already written frame (output clock ahead)
        self.placeholders = 0  # placeholder writes (before the first frame, or idle)
        self.dropped_before_process = 0
        self.dropped_before_output = 0
        self._lock = threading.Lock()
        self._recorded = 0  # record_written calls so far; guarded by _lock
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.stage_ms: dict[str, deque[float]] = {}
        self.start()

    def start(self) -> None:
        """Mark the start of the run: a :meth:`summary` without ``since`` measures from
        here. The pipeline calls it as its threads start."""
        self._start = self.snapshot()

    @property
    def started(self) -> float:
        """When the run started (:func:`time.monotonic`)."""
        return self._start.t

    def record_written(self, timings: dict[str, float], latency_ms: float) -> None:
        """Called by the output thread once per newly written (not repeated) frame."""
        with self._lock:
            self.latency_ms.append(latency_ms)
            self._recorded += 1
            for name, ms in timings.items():
                d = self.stage_ms.get(name)
                if d is None:
                    d = self.stage_ms[name] = deque(maxlen=self.window)
                d.append(ms)

    def snapshot(self) -> Snapshot:
        """Every counter now."""
        return Snapshot(
            t=self._clock(),
            cpu=self._cpu_clock(),
            captured=self.captured,
            processed=self.processed,
            written=self.written,
            repeats=self.repeats,
            placeholders=self.placeholders,
            dropped_before_process=self.dropped_before_process,
            dropped_before_output=self.dropped_before_output,
            recorded=self._recorded,
        )

    def latency(self) -> list[float]:
        """A copy of the recent capture-to-write latencies in ms."""
        with self._lock:
            return list(self.latency_ms)

    def stages(self) -> dict[str, list[float]]:
        """A copy of the recent per-stage timings in ms."""
        with self._lock:
            return {k: list(v) for k, v in self.stage_ms.items()}

    def summary(
        self,
        since: Snapshot | None = None,
        until: Snapshot | None = None,
        *,
        last: int | None = None,
    ) -> Summary:
        """Rates and CPU between ``since`` (default: the start) and ``until`` (default: now),
        with the latencies recorded between them, or with ``last``, the newest ``last``
        recorded up to ``until`` (as far as the window still holds them)."""
        end = until if until is not None else self.snapshot()
        start = since if since is not None else self._start
        with self._lock:
            values = list(self.latency_ms)
            recorded = self._recorded
        later = recorded - end.recorded  # recorded after ``until``: not in this summary
        if later > 0:
            values = values[: max(0, len(values) - later)]
        n = last if last is not None else end.recorded - start.recorded
        values = values[len(values) - min(len(values), max(0, n)) :]
        return Summary(start, end, values)

    def status_line(self, prev: Snapshot) -> str:
        """``in/out fps, drops, latency`` since ``prev``, for the ``-v`` status line."""
        return self.summary(prev, last=STATUS_LATENCIES).status_line()
