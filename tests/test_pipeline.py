"""The threaded pipeline: ordering, drop policy, output clock, errors and shutdown."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import read_frames, write_clip
from fakes import FakeSegmenter
from mattecam.compositing import ColorBackground
from mattecam.errors import SourceError
from mattecam.frame import Frame
from mattecam.imaging.yuv import as_bgr
from mattecam.matte import BilinearRefiner
from mattecam.matte.stage import MatteStage
from mattecam.pipeline import Pipeline
from mattecam.process import FrameProcessor
from mattecam.sinks import FileSink, NullSink
from mattecam.sources import FileSource

THREAD_NAMES = {"capture", "process", "output"}


class RecordingSink(NullSink):
    """Keeps the sequence number and write time of every frame written."""

    def __init__(self, *, live: bool = False, stop_after: int | None = None) -> None:
        super().__init__()
        self.live = live
        self.seqs: list[int] = []
        self.times: list[float] = []
        self.stop_after = stop_after
        self.closed = 0
        self.aborted = 0

    def write(self, frame: Frame) -> None:
        super().write(frame)
        self.seqs.append(frame.seq)
        self.times.append(time.monotonic())
        if self.stop_after is not None and len(self.seqs) >= self.stop_after:
            self.stop_requested = True

    def close(self) -> None:
        self.closed += 1

    def abort(self) -> None:
        self.aborted += 1


class SlowProcessor(FrameProcessor):
    """A processor made slower or failing on demand (fault injection): ``delay`` stands in
    for a slow model (the real one takes ~2 ms a frame at these sizes, the fake less)."""

    def __init__(self, base: FrameProcessor, *, delay: float = 0.0, fail_at: int = -1) -> None:
        super().__init__(base.matting, base.background)
        self.delay = delay
        self.fail_at = fail_at

    def process(self, frame: Frame) -> Frame:
        if frame.seq == self.fail_at:
            raise RuntimeError("injected failure")
        time.sleep(self.delay)
        return super().process(frame)


@pytest.fixture
def processor() -> FrameProcessor:
    """The fake model (the clip's bright square is its "person") on a green background:
    these tests are about threads, the drop policy, the clock and shutdown, so they need
    neither the model files nor its speed. The real model is tested in test_segmentation.py,
    and in whole runs (``python -m mattecam``) in test_shutdown.py."""
    return FrameProcessor(
        MatteStage(FakeSegmenter(), BilinearRefiner()), ColorBackground((0, 255, 0))
    )


def no_pipeline_threads() -> bool:
    return not THREAD_NAMES & {t.name for t in threading.enumerate()}


def test_batch_writes_every_frame_in_order(
    tmp_path: Path, clip: Path, processor: FrameProcessor
) -> None:
    rec = RecordingSink()
    out = tmp_path / "out.mp4"
    p = Pipeline(FileSource(clip), processor, [rec, FileSink(out)], live=False)
    m = p.run()
    assert rec.seqs == list(range(12))
    assert (m.captured, m.processed, m.written, m.repeats) == (12, 12, 12, 0)
    assert m.dropped_before_process == m.dropped_before_output == 0
    assert rec.closed == 1 and rec.aborted == 0
    assert len(read_frames(out)) == 12
    stages = m.stages()
    for name in ("decode", "preprocess", "inference", "refine", "composite", "write"):
        assert len(stages[name]) == 12, name
    assert len(m.latency()) == 12
    assert no_pipeline_threads()


def test_slow_processing_drops_instead_of_queueing(
    tmp_path: Path, processor: FrameProcessor
) -> None:
    """Input at 100 fps, processing at ~25 fps: frames are dropped, never queued, so latency
    stays bounded; the output clock repeats frames to keep 100 fps."""
    clip = write_clip(tmp_path / "fast.mp4", n=60, fps=100)
    rec = RecordingSink(live=True)
    slow = SlowProcessor(processor, delay=0.04)
    p = Pipeline(FileSource(clip, realtime=True), slow, [rec], live=True)
    m = p.run()
    assert m.captured == 60
    assert m.processed < 40
    assert m.dropped_before_process > 20
    assert m.repeats > 0
    new = [s for i, s in enumerate(rec.seqs) if i == 0 or s != rec.seqs[i - 1]]
    assert new == sorted(set(new))  # newer frames only, never back in time
    assert new[-1] >= 55  # the end of the clip got through
    # No build-up: latency stays within a few processing times.
    assert np.percentile(m.latency(), 95) < 200
    gaps = np.diff(rec.times)
    assert np.median(gaps) == pytest.approx(0.01, abs=0.004)  # steady output clock


def test_live_output_repeats_when_processing_stalls(
    tmp_path: Path, processor: FrameProcessor
) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=5, fps=10)
    rec = RecordingSink(live=True)
    slow = SlowProcessor(processor, delay=0.25)
    p = Pipeline(FileSource(clip, realtime=True), slow, [rec], live=True, fps=20)
    m = p.run()
    # Each processed frame takes 5 output intervals: the consumer still gets a continuous
    # 20 fps stream, made of repeats between new frames.
    span = rec.times[-1] - rec.times[0]
    assert span > 0.3
    assert m.written >= 0.8 * span * 20
    assert m.repeats >= m.written // 2
    assert np.max(np.diff(rec.times)) < 0.1


def test_error_in_a_thread_stops_everything_and_aborts_outputs(
    tmp_path: Path, clip: Path, processor: FrameProcessor
) -> None:
    out = tmp_path / "out.mp4"
    rec = RecordingSink()
    p = Pipeline(
        FileSource(clip), SlowProcessor(processor, fail_at=4), [rec, FileSink(out)], live=False
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        p.run()
    assert rec.aborted == 1 and rec.closed == 0
    assert sorted(tmp_path.iterdir()) == [clip]  # no output, no temporary file
    assert no_pipeline_threads()


class FailingSource(FileSource):
    def read(self) -> Frame | None:
        frame = super().read()
        if frame is not None and frame.seq == 3:
            raise SourceError("camera unplugged")
        return frame


def test_source_error_is_reported(clip: Path, processor: FrameProcessor) -> None:
    rec = RecordingSink()
    with pytest.raises(SourceError, match="unplugged"):
        Pipeline(FailingSource(clip), processor, [rec], live=False).run()
    assert rec.aborted == 1
    assert no_pipeline_threads()


def test_stop_from_another_thread_finalises_output(
    tmp_path: Path, clip: Path, processor: FrameProcessor
) -> None:
    out = tmp_path / "live.mp4"
    p = Pipeline(FileSource(clip, realtime=True, loop=True), processor, [FileSink(out)], live=True)
    threading.Timer(0.8, p.stop).start()
    t = time.monotonic()
    m = p.run()
    assert time.monotonic() - t < 3
    assert m.written > 5
    assert len(read_frames(out)) == m.written
    assert no_pipeline_threads()


def test_sink_can_ask_to_stop(clip: Path, processor: FrameProcessor) -> None:
    rec = RecordingSink(live=True, stop_after=5)
    p = Pipeline(FileSource(clip, realtime=True, loop=True), processor, [rec], live=True)
    m = p.run()
    assert 5 <= m.written <= 7
    assert rec.closed == 1


class WatchedSink(RecordingSink):
    """A sink that, like the virtual camera, wants placeholders and reports its viewers."""

    wants_placeholder = True

    def __init__(self, viewers: int | None) -> None:
        super().__init__(live=True)
        self.watchers = viewers

    @property
    def viewers(self) -> int | None:
        return self.watchers


class CountingCamera(FileSource):
    """A looping paced file that, like a camera, is released while nobody watches."""

    release_when_idle = True

    def __init__(self, path: Path) -> None:
        super().__init__(path, realtime=True, loop=True)
        self.opens = 0
        self.closes = 0
        self.is_open = False

    def open(self) -> None:
        super().open()
        self.opens += 1
        self.is_open = True

    def close(self) -> None:
        if self.is_open:
            self.closes += 1
        self.is_open = False
        super().close()


def wait_for(condition: object, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - t0


def test_placeholder_until_the_first_frame(tmp_path: Path, processor: FrameProcessor) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=6, fps=30)
    sink = WatchedSink(viewers=None)
    slow_start = SlowProcessor(processor, delay=0.3)
    m = Pipeline(FileSource(clip, realtime=True), slow_start, [sink], live=True).run()
    assert sink.seqs[0] == -1  # the placeholder came first, before any processed frame
    first_real = next(i for i, s in enumerate(sink.seqs) if s >= 0)
    assert first_real >= 5  # ~0.3 s at 30 fps of placeholders
    gaps = np.diff(sink.times[: first_real + 1])
    assert gaps.max() < 0.1  # the placeholder flowed on the clock
    assert m.placeholders == first_real


def test_nobody_watching_releases_the_camera_and_resumes(
    tmp_path: Path, processor: FrameProcessor
) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=12, fps=30)
    cam = CountingCamera(clip)
    sink = WatchedSink(viewers=1)
    p = Pipeline(cam, processor, [sink], live=True)
    runner = threading.Thread(target=p.run)
    runner.start()
    try:
        wait_for(lambda: sink.frames_written > 10 and max(sink.seqs) >= 0)
        sink.watchers = 0
        released_after = wait_for(lambda: not cam.is_open)
        assert released_after < 2.0
        assert p.idle.is_set()
        n = len(sink.seqs)
        time.sleep(0.5)
        assert all(s == -1 for s in sink.seqs[n:])  # only placeholders while idle
        assert len(sink.seqs) - n >= 10  # ... and they keep flowing
        processed = p.metrics.processed
        time.sleep(0.3)
        assert p.metrics.processed == processed  # no inference while idle
        sink.watchers = 1
        mark = len(sink.seqs)
        back_after = wait_for(lambda: any(s >= 0 for s in sink.seqs[mark:]))
        assert back_after < 2.0
        assert cam.opens == 2
    finally:
        p.stop()
        runner.join(10)
    assert not runner.is_alive()


def test_always_on_ignores_viewers(tmp_path: Path, processor: FrameProcessor) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=12, fps=30)
    cam = CountingCamera(clip)
    sink = WatchedSink(viewers=0)
    p = Pipeline(cam, processor, [sink], live=True, always_on=True)
    threading.Timer(1.0, p.stop).start()
    p.run()
    assert cam.opens == 1 and not p.idle.is_set()
    assert max(sink.seqs) > 5


def test_live_change_of_background_does_not_interrupt_output(
    tmp_path: Path, processor: FrameProcessor
) -> None:
    """Swap the background mid-run: the output keeps its cadence (no gap longer than four
    frame intervals) and frames after the swap show the new colour."""
    clip = write_clip(tmp_path / "c.mp4", n=24, fps=30)
    colours: list[tuple[float, int]] = []

    class ColourSink(RecordingSink):
        def write(self, frame: Frame) -> None:
            super().write(frame)
            colours.append((time.monotonic(), int(as_bgr(frame.image)[-1, -1, 0])))

    sink = ColourSink(live=True)
    p = Pipeline(FileSource(clip, realtime=True, loop=True), processor, [sink], live=True)
    swap_at: list[float] = []

    def swap() -> None:
        swap_at.append(time.monotonic())
        p.processor.update(background=ColorBackground((255, 0, 0)), mirror=True)

    threading.Timer(0.7, swap).start()
    threading.Timer(1.5, p.stop).start()
    p.run()
    times = np.array(sink.times)
    # The cadence itself is pinned exactly with a fake clock (test_outclock.py); here the
    # output must just never stall. An output waiting for a swap (a model load) or a pause
    # stalls for hundreds of milliseconds, a busy scheduler for a few tens.
    assert np.diff(times).max() < 4 / 30
    before = [c for t, c in colours if t < swap_at[0]]
    after = [c for t, c in colours if t > swap_at[0] + 0.2]
    assert before and after
    assert np.median(before) < 50 and np.median(after) > 200  # green (B=0) -> blue (B=255)
    assert processor.mirror is True


def test_update_closes_replaced_stages(processor: FrameProcessor) -> None:
    closed: list[str] = []

    class Tracked(ColorBackground):
        def __init__(self, name: str) -> None:
            super().__init__((0, 0, 0))
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    processor.update(background=Tracked("a"))
    processor.update(background=Tracked("b"))  # supersedes a before it was ever used
    assert closed == ["a"]
    frame = Frame(np.zeros((96, 160, 3), np.uint8), 0, time.monotonic())
    processor.process(frame)
    assert isinstance(processor.background, Tracked) and processor.background.name == "b"
    processor.update(background=Tracked("c"))
    processor.process(frame)
    assert closed == ["a", "b"]


def test_pause_sends_a_still_then_resumes(tmp_path: Path, processor: FrameProcessor) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=24, fps=30)
    sink = RecordingSink(live=True)
    p = Pipeline(FileSource(clip, realtime=True, loop=True), processor, [sink], live=True)
    still = np.full((10, 10, 3), 77, np.uint8)
    threading.Timer(0.5, lambda: p.pause(still)).start()
    threading.Timer(1.2, lambda: p.pause(None)).start()
    threading.Timer(1.8, p.stop).start()
    processed: list[int] = []
    threading.Timer(0.8, lambda: processed.append(p.metrics.processed)).start()
    threading.Timer(1.1, lambda: processed.append(p.metrics.processed)).start()
    p.run()
    seqs = np.array(sink.seqs)
    paused = np.flatnonzero(seqs == -2)
    assert len(paused) >= 15  # ~0.7 s of stills at 30 fps
    assert seqs[paused[-1] + 1 :].max() >= 0  # live again afterwards
    assert processed[0] == processed[1]  # nothing processed while paused
    assert np.diff(np.array(sink.times)).max() < 4 / 30  # never stalls (see above)


def test_crop_switches_at_the_next_frame_and_resets_temporal_state() -> None:
    """``update(crop=False)`` takes effect at the next frame: the framing no longer crops,
    and the refiner's smoothing (kept in the old crop's coordinates) starts afresh."""
    from mattecam.matte import TemporalRefiner

    class CountingRefiner(TemporalRefiner):
        resets = 0

        def reset(self) -> None:
            self.resets += 1
            super().reset()

    refiner = CountingRefiner(BilinearRefiner())
    p = FrameProcessor(MatteStage(FakeSegmenter(), refiner), ColorBackground((0, 255, 0)))
    image = np.full((360, 640, 3), 30, np.uint8)
    image[100:220, 300:340] = 220  # a small person: the framing crops around them
    frame = Frame(image, 0, time.monotonic())
    assert p.matting.framing.enabled
    p.process(frame)
    rect = p.matting.framing.rect
    assert rect is not None and rect != (0, 0, 640, 360)  # cropping before the switch
    p.update(crop=False)
    assert p.matting.framing.enabled and refiner.resets == 0  # queued, not yet applied
    p.process(frame)
    assert not p.matting.framing.enabled and refiner.resets == 1
    assert p.matting.framing.rect is None  # never cropped since
    p.close()
