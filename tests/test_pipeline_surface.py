"""What callers see of a pipeline: it owns what it was given (run or not), its small surface
(update, pause, size, status), and the one metrics summary behind ``-v``, the API and bench."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import write_clip
from mattecam import app, bench
from mattecam.app import LiveSession
from mattecam.compositing import ColorBackground
from mattecam.config import Settings
from mattecam.errors import ConfigError
from mattecam.live import LiveController
from mattecam.matte import BilinearRefiner
from mattecam.matte.stage import MatteStage
from mattecam.metrics import Metrics, Snapshot, Summary
from mattecam.pipeline import Pipeline
from mattecam.process import FrameProcessor
from mattecam.segmentation.base import Alpha, Segmenter
from mattecam.sinks import LatestFrameSink, NullSink
from mattecam.sources import FileSource

# --- stand-ins that count what is done to them -----------------------------------------------


class BrightSegmenter(Segmenter):
    """A cheap model: "person" = pixels brighter than mid-grey."""

    input_size = (64, 36)

    def run(self, tensor: NDArray[np.float32]) -> Alpha:
        return np.asarray(tensor[0].mean(axis=2) > 0.5, np.float32)


class CountingBackground(ColorBackground):
    def __init__(self) -> None:
        super().__init__((0, 255, 0))
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


class CountingProcessor(FrameProcessor):
    def __init__(self) -> None:
        self.first_background = CountingBackground()
        super().__init__(MatteStage(BrightSegmenter(), BilinearRefiner()), self.first_background)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


class CountingSource(FileSource):
    def __init__(self, path: Path, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1
        super().open()

    def close(self) -> None:
        self.closed += 1
        super().close()


class CountingSink(NullSink):
    def __init__(self, viewers: int | None = None) -> None:
        super().__init__()
        self._viewers = viewers
        self.opened = self.closed = 0

    @property
    def viewers(self) -> int | None:
        return self._viewers

    def open(self, size: tuple[int, int], fps: float) -> None:
        self.opened += 1
        super().open(size, fps)

    def close(self) -> None:
        self.closed += 1
        super().close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", n=6)


def pipeline(clip: Path, *sinks: CountingSink, live: bool = False) -> Pipeline:
    return Pipeline(
        CountingSource(clip), CountingProcessor(), list(sinks) or [CountingSink()], live=live
    )


def counts(p: Pipeline) -> tuple[int, int, int, int, int]:
    """(source opened, source closed, processor closed, first sink opened, its closes)."""
    src, proc, sink = p.source, p.processor, p.sinks[0]
    assert isinstance(src, CountingSource) and isinstance(proc, CountingProcessor)
    assert isinstance(sink, CountingSink)
    return src.opened, src.closed, proc.closed, sink.opened, sink.closed


# --- ownership -------------------------------------------------------------------------------


def test_a_pipeline_that_never_runs_releases_its_processor_on_close(clip: Path) -> None:
    p = pipeline(clip)
    p.close()
    assert counts(p) == (0, 0, 1, 0, 0)  # sources and sinks hold nothing until opened
    p.close()  # idempotent
    assert counts(p) == (0, 0, 1, 0, 0)
    with pytest.raises(RuntimeError, match="not after close"):
        p.run()
    assert counts(p) == (0, 0, 1, 0, 0)  # nothing opened


def test_the_pipeline_is_a_context_manager(clip: Path) -> None:
    with pipeline(clip) as p:
        pass
    assert counts(p) == (0, 0, 1, 0, 0)


def test_close_after_run_is_a_no_op(clip: Path) -> None:
    p = pipeline(clip)
    m = p.run()
    assert m.written == 6
    assert counts(p) == (1, 1, 1, 1, 1)  # run released each once
    p.close()
    assert counts(p) == (1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match="runs once"):
        p.run()


def test_a_stop_before_run_then_close_releases_once(clip: Path) -> None:
    p = pipeline(clip)
    p.stop()
    p.run()
    p.close()
    assert counts(p) == (0, 0, 1, 0, 0)


def test_stages_handed_to_a_pipeline_that_never_ran_are_released(clip: Path) -> None:
    """What :meth:`Pipeline.update` was given belongs to the pipeline: closed by
    :meth:`Pipeline.close` even though no frame ever swapped it in."""
    p = pipeline(clip)
    first = p.processor.background
    second, third = CountingBackground(), CountingBackground()
    p.update(background=second)
    p.update(background=third)  # supersedes the second, which is closed at once
    assert second.closed == 1 and third.closed == 0
    p.close()
    assert isinstance(first, CountingBackground)
    assert (first.closed, second.closed, third.closed) == (1, 1, 1)


def test_live_session_closes_a_pipeline_that_never_ran(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Pipeline] = []

    def build(settings: Settings, *, extra_sinks: Any = ()) -> Pipeline:
        built.append(pipeline(clip, CountingSink(), *extra_sinks))
        return built[-1]

    monkeypatch.setattr(app, "build_pipeline", build)
    settings = Settings(input=str(clip), outputs=("null",))
    session = LiveSession(settings)
    session.close()
    assert counts(built[0]) == (0, 0, 1, 0, 0)
    session.close()
    assert counts(built[0]) == (0, 0, 1, 0, 0)

    # A session that cannot start (its control port is taken) releases the model too.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="control-port"):
            LiveSession(
                Settings(input=str(clip), outputs=("null",), control=True, control_port=port)
            )
    assert counts(built[1]) == (0, 0, 1, 0, 0)


# --- surface ---------------------------------------------------------------------------------


def test_size_update_and_pause_through_the_surface(clip: Path) -> None:
    p = pipeline(clip)
    assert p.size == (0, 0)  # not open yet
    p.update(mirror=True, light_wrap=0.25)
    assert not p.processor.mirror  # queued for the next frame boundary
    p.run()
    assert p.size == (160, 96)
    assert p.processor.mirror and p.processor.light_wrap == 0.25
    p.pause(np.zeros((10, 10, 3), np.uint8))
    assert p.paused
    p.resume()
    assert not p.paused


def test_status_reports_mode_viewers_and_watching(clip: Path) -> None:
    tap = LatestFrameSink()
    unknown, nobody, two = CountingSink(), CountingSink(0), CountingSink(2)
    p = Pipeline(CountingSource(clip), CountingProcessor(), [unknown, nobody, tap], live=True)
    try:
        st = p.status(excluding=tap)
        assert (st.live, st.paused, st.idle) == (True, False, False)
        assert st.viewers == [None, 0] and st.watching is False
        assert p.status().viewers == [None, 0, 0]  # the tap reports 0 of its own
        p.sinks.append(two)
        assert p.status(excluding=tap).watching is True
        del p.sinks[1:]
        assert p.status(excluding=tap).watching is None  # no output can tell
    finally:
        p.close()


# --- the one summary -------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fabricated() -> tuple[Metrics, Clock, Clock]:
    """Metrics started at t=10 s (CPU 1 s) with 2 s of made-up frames after it: 60 in, 58
    processed, 62 written (2 repeats), latencies 1..58 ms, and CPU time 1.5 s by the end."""
    clock, cpu = Clock(10.0), Clock(1.0)
    m = Metrics(clock=clock, cpu_clock=cpu)
    m.captured, m.processed, m.written, m.repeats = 60, 58, 62, 2
    m.placeholders, m.dropped_before_process, m.dropped_before_output = 3, 2, 0
    for ms in range(1, 59):
        m.record_written({"inference": 2.0}, float(ms))
    clock.t, cpu.t = 12.0, 1.5
    return m, clock, cpu


def test_summary_of_known_records() -> None:
    m, _, _ = fabricated()
    s = m.summary()
    assert s.seconds == 2.0
    assert (s.fps_in, s.fps_processed, s.fps_out) == (30.0, 29.0, 31.0)
    assert s.cpu_percent == pytest.approx(25.0)
    assert s.latency_ms == [float(ms) for ms in range(1, 59)]
    assert s.latency(50) == pytest.approx(29.5)
    assert s.latency(95) == pytest.approx(np.percentile(np.arange(1, 59), 95))
    assert (s.end.repeats, s.end.placeholders, s.end.dropped) == (2, 3, 2)
    assert m.summary(last=10).latency_ms == [float(ms) for ms in range(49, 59)]


def test_summary_between_two_snapshots_takes_the_latencies_recorded_between() -> None:
    m, clock, cpu = fabricated()
    since = m.snapshot()  # t=12, after 58 records
    for ms in (100.0, 200.0, 300.0):
        m.record_written({}, ms)
    m.captured += 3
    clock.t, cpu.t = 12.5, 1.6
    until = m.snapshot()
    m.record_written({}, 999.0)  # after ``until``: not in that window
    s = m.summary(since, until)
    assert s.latency_ms == [100.0, 200.0, 300.0]
    assert s.seconds == 0.5 and s.fps_in == 6.0
    assert s.cpu_percent == pytest.approx(20.0)
    assert m.summary(since, until, last=2).latency_ms == [200.0, 300.0]
    assert m.summary(since).latency_ms == [100.0, 200.0, 300.0, 999.0]


def test_summary_keeps_only_what_the_window_holds_and_is_nan_when_empty() -> None:
    m = Metrics(window=4, clock=Clock(5.0), cpu_clock=Clock(0.0))
    since = m.snapshot()
    s = m.summary(since)
    assert s.latency_ms == [] and math.isnan(s.latency(50))
    assert s.fps_out == 0.0  # a zero-length window: no division by zero
    for ms in range(10):
        m.record_written({}, float(ms))
    assert m.summary(since).latency_ms == [6.0, 7.0, 8.0, 9.0]
    assert "latency p50 nan ms" in Summary(since, since, []).status_line()


def test_status_line_reads_the_summary() -> None:
    m, _, _ = fabricated()
    start = Snapshot(t=10.0, cpu=1.0)
    assert m.status_line(start) == (
        "in 30.0 fps, processed 29.0 fps, out 31.0 fps | dropped 2+0, repeated 2 | "
        "latency p50 29.5 ms p95 55.1 ms"
    )
    assert m.status_line(start) == m.summary(start, last=256).status_line()


def test_api_status_reads_the_summary(clip: Path) -> None:
    m, clock, cpu = fabricated()
    tap = LatestFrameSink()
    p = Pipeline(
        CountingSource(clip), CountingProcessor(), [CountingSink(), tap], live=True, metrics=m
    )
    controller = LiveController(p, Settings(input=str(clip), outputs=("null",)), latest=tap)
    try:
        status = controller.status()  # the first call: since the start
        assert status["fps"] == {"in": 30.0, "processed": 29.0, "out": 31.0}
        assert status["cpu_percent"] == pytest.approx(25.0)
        assert status["latency_ms"] == {
            "p50": pytest.approx(29.5),
            "p95": pytest.approx(m.summary().latency(95)),
        }
        assert status["frames"] == {
            "captured": 60,
            "processed": 58,
            "written": 62,
            "repeats": 2,
            "placeholders": 3,
        }
        assert status["dropped"] == {"before_process": 2, "before_output": 0}
        assert status["viewers"] == [None] and status["watching"] is None
        assert (status["live"], status["paused"], status["pause"]) == (True, False, None)
        # The next call measures from the previous one (the real clock, which picks it, is
        # well over half a second past the made-up t=12).
        m.captured += 10
        clock.t, cpu.t = 14.0, 1.6
        later = controller.status()
        assert later["fps"]["in"] == 5.0 and later["fps"]["out"] == 0.0
        assert later["cpu_percent"] == pytest.approx(5.0)
        # Keys the control page and ``mattecam ctl status`` read: unchanged.
        assert set(later) == {
            "live",
            "paused",
            "pause",
            "idle",
            "watching",
            "viewers",
            "fps",
            "cpu_percent",
            "latency_ms",
            "frames",
            "dropped",
            "uptime_s",
            "restart_needed",
            "config_error",
        }
    finally:
        p.close()


def test_bench_reports_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench``'s live and batch figures are the summary's, over the window it measured."""
    summaries: list[Summary] = []
    real = Metrics.summary

    def spy(self: Metrics, *args: Any, **kw: Any) -> Summary:
        summaries.append(real(self, *args, **kw))
        return summaries[-1]

    monkeypatch.setattr(Metrics, "summary", spy)
    monkeypatch.setattr(bench, "make_processor", lambda opts, size: CountingProcessor())
    opts = bench.BenchOptions(sizes=((160, 96),), frames=12, live_seconds=1.5)
    prepared = bench.prepare(opts, (160, 96), Path())
    live = bench.run_live(opts, prepared)
    (window,) = summaries
    assert live["seconds"] == round(window.seconds, 2) and 0.4 < window.seconds < 1.5
    assert live["cpu_percent"] == window.cpu_percent
    for q in (50, 95, 99):
        assert live[f"latency_p{q}_ms"] == window.latency(q)
    assert len(window.latency_ms) > 5  # ~15 frames at 30 fps in the half second measured
    assert set(live) == {
        "fps",
        "seconds",
        "cpu_percent",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_first_third_p50_ms",
        "latency_last_third_p50_ms",
        "frames_captured",
        "frames_written",
        "dropped",
        "repeated",
        "rss_growth_mb",
        "cpu_percent_by_thread",
    }
    fps, metrics = bench.run_batch(opts, prepared)
    assert metrics.written == 12 and fps == summaries[-1].fps_out > 0


def test_frame_written_by_a_run_reaches_the_summary(clip: Path) -> None:
    """A real run records each new frame's latency once, and counts it in the summary."""
    p = pipeline(clip)
    m = p.run()
    s = m.summary()
    assert s.end.written == 6 and len(s.latency_ms) == 6
    assert all(ms > 0 for ms in s.latency_ms)
    assert len(m.stages()["write"]) == 6
