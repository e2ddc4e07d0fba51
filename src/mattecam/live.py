"""Live changes to a running pipeline: rebuild only what changed, report what needs a restart."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from mattecam.config import Settings
from mattecam.errors import ConfigError, MattecamError
from mattecam.imaging import placeholder
from mattecam.metrics import STATUS_LATENCIES, Snapshot
from mattecam.pipeline import Pipeline
from mattecam.sinks import LatestFrameSink
from mattecam.stages import rebuild

log = logging.getLogger(__name__)

#: Settings a running pipeline takes without reopening anything.
LIVE_KEYS = frozenset(
    {
        "background",
        "blur_strength",
        "model",
        "threads",
        "refine",
        "temporal",
        "crop",
        "edge_radius",
        "edge_eps",
        "mirror",
        "light_wrap",
    }
)
#: Settings that only take effect when mattecam is started again (they reopen devices).
RESTART_KEYS = frozenset(f.name for f in dataclasses.fields(Settings)) - LIVE_KEYS

PauseKind = Literal["still", "brb"]
BRB_TEXT = "Be right back"


class NotRunningError(MattecamError):
    """The pipeline has not opened its input yet (or has stopped)."""


@dataclass(frozen=True)
class ChangeResult:
    """What a change did: settings applied live, and settings that need a restart."""

    applied: tuple[str, ...]
    restart: tuple[str, ...]


class LiveController:
    """Applies new settings to a running :class:`~mattecam.pipeline.Pipeline`.

    :meth:`change` may be called from any thread (the config watcher, the control server's
    request threads); a lock serialises changes, so two callers never build stages for the
    same slot at once. New stages are built on the caller's thread with the same factories
    as at start, then handed to :meth:`Pipeline.update
    <mattecam.pipeline.Pipeline.update>`, which swaps them in at the next frame boundary:
    the outputs keep their clock and the virtual camera is never reopened. A change that
    fails to build leaves everything as it was.
    """

    def __init__(
        self, pipeline: Pipeline, settings: Settings, *, latest: LatestFrameSink | None = None
    ) -> None:
        self.pipeline = pipeline
        self.latest = latest
        self._settings = settings
        self._lock = threading.Lock()  # serialises changes (held while stages are built)
        self._restart_lock = threading.Lock()  # guards _restart; never held for long
        self._restart: dict[str, object] = {}
        self.pause_kind: PauseKind | None = None
        self.config_error: str | None = None  # set by the config watcher
        self._status_lock = threading.Lock()  # guards _samples
        self._samples: deque[Snapshot] = deque(maxlen=32)
        self._started = time.monotonic()

    @property
    def settings(self) -> Settings:
        """The settings in effect now."""
        return self._settings

    @property
    def restart_needed(self) -> dict[str, object]:
        """Settings changed (by the config file) that wait for a restart, with new values."""
        with self._restart_lock:
            return dict(self._restart)

    def change(self, **changes: object) -> ChangeResult:
        """Apply ``changes`` (Settings field names and values) to the running pipeline.

        Returns which keys were applied live and which need a restart (those are kept in
        :attr:`restart_needed` and logged, not applied). Any thread.

        Raises:
            ConfigError: an unknown key or an invalid value.
            MattecamError: a new stage could not be built (missing image, bad model...);
                nothing was changed.
        """
        with self._lock:
            old = self._settings
            unknown = sorted(set(changes) - LIVE_KEYS - RESTART_KEYS)
            if unknown:
                raise ConfigError(f"unknown setting {unknown[0]!r}")
            try:
                new = dataclasses.replace(old, **changes)  # type: ignore[arg-type]
            except TypeError as e:
                raise ConfigError(f"invalid setting: {e}") from None
            live = sorted(
                k for k in changes if k in LIVE_KEYS and getattr(new, k) != getattr(old, k)
            )
            restart = sorted(k for k in changes if k in RESTART_KEYS)
            for key in restart:
                with self._restart_lock:
                    if getattr(new, key) == getattr(old, key):
                        self._restart.pop(key, None)
                        continue
                    self._restart[key] = getattr(new, key)
                log.warning(
                    "%s changed to %r: this takes effect when mattecam is restarted",
                    key,
                    getattr(new, key),
                )
            if live:
                self._apply(old, new, set(live))
                self._settings = dataclasses.replace(old, **{k: getattr(new, k) for k in live})
                log.info("applied live: %s", ", ".join(f"{k}={getattr(new, k)!r}" for k in live))
            pending = self.restart_needed
            return ChangeResult(tuple(live), tuple(k for k in restart if k in pending))

    def _apply(self, old: Settings, new: Settings, keys: set[str]) -> None:
        built = rebuild(new, keys)
        self.pipeline.update(
            segmenter=built.segmenter,
            refiner=built.refiner,
            background=built.background,
            mirror=new.mirror if "mirror" in keys else None,
            light_wrap=new.light_wrap if "light_wrap" in keys else None,
            crop=new.crop if "crop" in keys else None,
        )

    # --- pause ---------------------------------------------------------------------------

    def pause(self, kind: PauseKind) -> None:
        """Send a still instead of the live picture: ``still`` freezes the last frame sent,
        ``brb`` sends a "be right back" card. Any thread.

        Raises:
            NotRunningError: the pipeline has not opened its input yet.
        """
        if kind not in ("still", "brb"):
            raise ConfigError(f"pause must be 'still' or 'brb', got {kind!r}")
        w, h = self.pipeline.size
        if w <= 0 or h <= 0:
            raise NotRunningError("the input is not open yet; try again in a moment.")
        image = self.latest.latest_live() if self.latest is not None and kind == "still" else None
        self.pipeline.pause(image if image is not None else placeholder(w, h, BRB_TEXT))
        self.pause_kind = kind

    def resume(self) -> None:
        """Back to the live picture. Any thread."""
        self.pipeline.resume()
        self.pause_kind = None

    # --- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready picture of the run: rates, CPU, latency, drops, viewers. Any thread.

        Rates are measured since an earlier call at least half a second ago (or since the
        start), so a page polling every second sees current values.
        """
        now = time.monotonic()
        with self._status_lock:
            base = None  # the start
            for sample in self._samples:
                if now - sample.t >= 0.5:
                    base = sample
            st = self.pipeline.status(base, last=STATUS_LATENCIES, excluding=self.latest)
            end = st.summary.end
            self._samples.append(end)
            while len(self._samples) > 1 and end.t - self._samples[0].t > 10:
                self._samples.popleft()
        summary = st.summary
        status: dict[str, Any] = _finite(
            {
                "live": st.live,
                "paused": st.paused,
                "pause": self.pause_kind if st.paused else None,
                "idle": st.idle,
                "watching": st.watching,
                "viewers": st.viewers,
                "fps": {
                    "in": summary.fps_in,
                    "processed": summary.fps_processed,
                    "out": summary.fps_out,
                },
                "cpu_percent": summary.cpu_percent,
                "latency_ms": {"p50": summary.latency(50), "p95": summary.latency(95)},
                "frames": {
                    "captured": end.captured,
                    "processed": end.processed,
                    "written": end.written,
                    "repeats": end.repeats,
                    "placeholders": end.placeholders,
                },
                "dropped": {
                    "before_process": end.dropped_before_process,
                    "before_output": end.dropped_before_output,
                },
                "uptime_s": end.t - self._started,
                "restart_needed": sorted(self.restart_needed),
                "config_error": self.config_error,
            }
        )
        return status


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so the result is valid JSON for browsers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
