"""Counters and timing records shared by the pipeline threads, the status line and bench."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


def percentile(values: list[float] | deque[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass
class Snapshot:
    """Counters at one moment, for rates between two snapshots."""

    t: float
    captured: int
    processed: int
    written: int


class Metrics:
    """Frame counters, per-stage timings and capture-to-write latency.

    Each counter is written by one thread only (capture, process or output) and read by
    others; reads of a Python int are atomic, so no lock is needed for them. The bounded
    deques keep the last ``window`` samples, so memory does not grow with run length; the
    lock guards them against a reader iterating while the output thread appends.
    """

    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self.captured = 0
        self.processed = 0
        self.written = 0  # frame writes, repeats included
        self.repeats = 0  # writes of an already written frame (output clock ahead)
        self.placeholders = 0  # placeholder writes (before the first frame, or idle)
        self.dropped_before_process = 0
        self.dropped_before_output = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.stage_ms: dict[str, deque[float]] = {}

    def record_written(self, timings: dict[str, float], latency_ms: float) -> None:
        """Called by the output thread once per newly written (not repeated) frame."""
        with self._lock:
            self.latency_ms.append(latency_ms)
            for name, ms in timings.items():
                d = self.stage_ms.get(name)
                if d is None:
                    d = self.stage_ms[name] = deque(maxlen=self.window)
                d.append(ms)

    def snapshot(self) -> Snapshot:
        """Current counters."""
        return Snapshot(time.monotonic(), self.captured, self.processed, self.written)

    def latency(self) -> list[float]:
        """A copy of the recent capture-to-write latencies in ms."""
        with self._lock:
            return list(self.latency_ms)

    def stages(self) -> dict[str, list[float]]:
        """A copy of the recent per-stage timings in ms."""
        with self._lock:
            return {k: list(v) for k, v in self.stage_ms.items()}

    def status_line(self, prev: Snapshot) -> str:
        """``in/out fps, drops, latency`` since ``prev``, for the ``-v`` status line."""
        now = self.snapshot()
        dt = max(now.t - prev.t, 1e-6)
        lat = self.latency()[-256:]
        return (
            f"in {(now.captured - prev.captured) / dt:.1f} fps, "
            f"processed {(now.processed - prev.processed) / dt:.1f} fps, "
            f"out {(now.written - prev.written) / dt:.1f} fps | "
            f"dropped {self.dropped_before_process}+{self.dropped_before_output}, "
            f"repeated {self.repeats} | "
            f"latency p50 {percentile(lat, 50):.1f} ms p95 {percentile(lat, 95):.1f} ms"
        )
