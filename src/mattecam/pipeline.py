"""Wires source -> process -> output with named threads and one-slot handoffs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import cv2

from mattecam.errors import MattecamError, PipelineStuckError
from mattecam.frame import Frame, Image
from mattecam.imaging import cover_fit, placeholder
from mattecam.imaging.yuv import I420, Picture
from mattecam.metrics import Metrics, Snapshot, Summary
from mattecam.outclock import OutputClock
from mattecam.process import FrameProcessor
from mattecam.sinks.base import Sink
from mattecam.sinks.file import FileSink
from mattecam.slot import Slot, SlotClosed
from mattecam.sources.base import Source

if TYPE_CHECKING:
    from mattecam.compositing.backgrounds import Background
    from mattecam.matte.base import Refiner
    from mattecam.segmentation.base import Segmenter

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 5.0
POLL = 0.1  # seconds every blocking wait lasts at most, so stop requests are seen


@dataclass(frozen=True)
class Status:
    """What a pipeline is doing now (:meth:`Pipeline.status`)."""

    live: bool
    paused: bool
    idle: bool  # nobody watches the outputs: nothing is captured or processed
    viewers: list[int | None]  # consumers of each output (None: it cannot tell)
    summary: Summary

    @property
    def watching(self) -> bool | None:
        """Whether anyone watches an output; None when no output can tell."""
        counted = [v for v in self.viewers if v is not None]
        return None if not counted else any(v > 0 for v in counted)


class Pipeline:
    """Runs a source, a processor and sinks until the input ends or ``stop`` is set.

    Threads: ``capture`` (reads and decodes), ``process`` (segment, refine, composite) and
    ``output`` (writes to every sink). Between them a :class:`~mattecam.slot.Slot`:

    * batch mode (a file to files): lossless slots, every frame is written once, as fast as
      the machine allows;
    * live mode (a camera, a paced file, a window or virtual camera): newest-frame-wins
      slots, so latency never builds up, and the output runs on its own clock: a new frame is
      written as soon as it is ready (at most about one per frame interval), and the last
      frame is written again when no new one came for a frame interval and a quarter, so
      consumers never stall while ordinary jitter does not cause a repeat. Sinks that want
      it (the virtual camera) get a placeholder picture until the first frame arrives.

    On demand: when every sink can tell how many consumers watch it and all say none (a
    virtual camera nobody reads), the pipeline goes idle: the capture thread releases a
    camera (its light goes off), nothing is processed, and the placeholder keeps flowing.
    When someone starts watching, the camera is opened again. ``always_on`` disables this.

    The first exception in any thread stops the pipeline and is re-raised by :meth:`run`.

    Ownership: the pipeline owns the source, the processor and the sinks it is given, and
    releases what they hold once: :meth:`run` at its end, or :meth:`close` (also as a
    context manager) when it never ran. Callers change it only through :meth:`update`,
    :meth:`pause`, :meth:`resume` and :meth:`stop`, and read it through :attr:`size`,
    :meth:`status`, :attr:`expected_frames` and :meth:`files`; any thread may call these.
    """

    def __init__(
        self,
        source: Source,
        processor: FrameProcessor,
        sinks: Sequence[Sink],
        *,
        live: bool,
        fps: float | None = None,
        metrics: Metrics | None = None,
        always_on: bool = False,
    ) -> None:
        self.source = source
        self.processor = processor
        self.sinks = list(sinks)
        self.live = live
        self._fps = fps
        self.metrics = metrics or Metrics()
        self.always_on = always_on
        self.stop_event = threading.Event()
        self.idle = threading.Event()  # set while nobody watches
        self._placeholder: Frame | None = None
        self._pause_frame: Frame | None = None
        self._errors: list[BaseException] = []
        self._in: Slot[Frame] = Slot(lossless=not live)
        self._out: Slot[Frame] = Slot(lossless=not live)
        self._threads: list[threading.Thread] = []
        self._state_lock = threading.Lock()  # guards _ran and _closed
        self._ran = False  # run() began: it releases everything at its end
        self._closed = False  # close() released everything; run() must not start

    @property
    def fps(self) -> float:
        """Output frame rate: the one asked for, else the source's."""
        return self._fps or self.source.fps

    def run(
        self,
        *,
        status_interval: float | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> Metrics:
        """Open everything, run to the end (or until :attr:`stop_event`), close everything.

        Shutdown order: the threads are asked to stop and joined; then each resource is
        released only once the one thread that uses it has ended: the sinks after
        ``output``, the source after ``capture``, the processor (model) after ``process``.
        A thread still running after :data:`JOIN_TIMEOUT` (stuck in a driver call, say)
        keeps its resources: they are left to the process's exit, never closed under it,
        and :meth:`run` raises :class:`PipelineStuckError`.

        Sinks are closed (files finalised) on a normal end or a stop request, and aborted
        (partial files removed) when an error occurred. Each sink is closed on its own: one
        that fails while finishing (a full disk) does not stop the others from finishing.
        A stop requested before :meth:`run` opens nothing. :meth:`run` runs once, and not
        after :meth:`close`.
        """
        with self._state_lock:
            if self._ran or self._closed:
                raise RuntimeError("a pipeline runs once, and not after close()")
            self._ran = True
        if self.stop_event.is_set():
            self.processor.close()
            return self.metrics
        # One thread per stage: OpenCV's own worker pool would compete with the other stages
        # for the same cores and gets slower, not faster, when they are busy.
        cv2.setNumThreads(1)
        opened: list[Sink] = []
        source_open = False
        failed = True
        try:
            self.source.open()
            source_open = True
            log.info("input: %s", self.source.describe())
            for sink in self.sinks:
                sink.open(self.source.size, self.fps)
                opened.append(sink)
                log.info("output: %s", sink.describe())
            if self.live and any(s.wants_placeholder for s in self.sinks):
                still = _picture(placeholder(*self.source.size))
                self._placeholder = Frame(still, -1, time.monotonic())
            self._run_threads(status_interval, on_status)
            failed = bool(self._errors)
        except KeyboardInterrupt:
            failed = bool(self._errors)  # the user's stop: files get the frames so far
            raise
        finally:
            stuck = self._stop_threads()  # again: an interrupt may have cut the first short
            self._release(
                opened, source_open=source_open, failed=failed or bool(stuck), stuck=stuck
            )
        if stuck:
            raise PipelineStuckError(
                f"the {' and '.join(sorted(stuck))} thread(s) did not stop within "
                f"{JOIN_TIMEOUT:.0f} s (a device or driver call that never returns?); what "
                "they use was left open for the process's exit to release."
            )
        if self._errors:
            raise self._errors[0]
        return self.metrics

    def _release(
        self, opened: list[Sink], *, source_open: bool, failed: bool, stuck: set[str]
    ) -> None:
        """Close what :meth:`run` opened, in reverse order of opening, skipping what a stuck
        thread may still use; the first error is raised after everything was tried."""
        errors: list[BaseException] = []

        def attempt(fn: Callable[[], None]) -> None:
            try:
                fn()
            except BaseException as e:  # a KeyboardInterrupt too: release the rest first
                errors.append(e)

        if "output" not in stuck:
            for sink in reversed(opened):
                attempt(sink.abort if failed else sink.close)
        if source_open and "capture" not in stuck:
            attempt(self.source.close)
        if "process" not in stuck:
            attempt(self.processor.close)
        if errors:
            if len(errors) > 1:
                for e in errors[1:]:
                    log.error("also failed while closing: %s", e)
            raise errors[0]

    def close(self) -> None:
        """Release what the pipeline was given if :meth:`run` never ran: the processor
        (model, background). Sources and sinks hold nothing until opened (their
        constructors only check and keep their arguments), so they need nothing. Once
        :meth:`run` began, it releases everything itself, in the shutdown order it
        documents, and this does nothing. Idempotent; any thread."""
        with self._state_lock:
            if self._ran or self._closed:
                return
            self._closed = True
        self.processor.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def discard_unfinished(self) -> None:
        """Delete every sink's unfinished output file now. Signal-safe: it only unlinks
        files (see :meth:`Sink.discard_unfinished`); for a process about to exit at once."""
        for sink in self.sinks:
            sink.discard_unfinished()

    def _run_threads(
        self, status_interval: float | None, on_status: Callable[[str], None] | None
    ) -> None:
        self._threads = [
            threading.Thread(target=self._guard(self._capture), name="capture", daemon=True),
            threading.Thread(target=self._guard(self._process), name="process", daemon=True),
            threading.Thread(target=self._guard(self._output), name="output", daemon=True),
        ]
        self.metrics.start()
        for t in self._threads:
            t.start()
        prev = self.metrics.snapshot()
        next_status = time.monotonic() + (status_interval or 0)
        try:
            # Until every thread ended, or a stop was asked for: then each gets a bounded join.
            while any(t.is_alive() for t in self._threads) and not self.stop_event.is_set():
                self._threads[-1].join(POLL)
                if status_interval and on_status and time.monotonic() >= next_status:
                    on_status(self.metrics.status_line(prev))
                    prev = self.metrics.snapshot()
                    next_status += status_interval
        finally:
            self._stop_threads()

    def _stop_threads(self) -> set[str]:
        """Ask every thread to stop and join each (at most :data:`JOIN_TIMEOUT`); the names
        of those still alive. Idempotent."""
        self.stop_event.set()
        self._in.close()
        self._out.close()
        for t in self._threads:
            if t.is_alive():
                t.join(JOIN_TIMEOUT)
                if t.is_alive():
                    log.error("thread %s did not stop within %.0f s", t.name, JOIN_TIMEOUT)
        return {t.name for t in self._threads if t.is_alive()}

    def update(
        self,
        *,
        segmenter: Segmenter | None = None,
        refiner: Refiner | None = None,
        background: Background | None = None,
        mirror: bool | None = None,
        light_wrap: float | None = None,
        crop: bool | None = None,
    ) -> None:
        """Swap in ready-built stages or new settings at the next frame boundary, on the
        ``process`` thread (see :meth:`FrameProcessor.update
        <mattecam.process.FrameProcessor.update>`); None keeps the current one. The
        pipeline owns what it is given: replaced stages are closed. Any thread."""
        self.processor.update(
            segmenter=segmenter,
            refiner=refiner,
            background=background,
            mirror=mirror,
            light_wrap=light_wrap,
            crop=crop,
        )

    @property
    def size(self) -> tuple[int, int]:
        """The input's (width, height): the output's too; (0, 0) until the input opened."""
        return self.source.size

    def pause(self, image: Image | None) -> None:
        """Send ``image`` (a still, a "be right back" card; scaled to cover the output) to
        every output instead of the live picture, without processing; None resumes.
        Safe from any thread; the outputs stay open and keep their frame rate."""
        if image is None:
            self._pause_frame = None
            log.info("resumed")
            return
        w, h = self.source.size
        self._pause_frame = Frame(_picture(cover_fit(image, w, h)), -2, time.monotonic())
        log.info("paused: sending a still picture")

    def resume(self) -> None:
        """Back to the live picture after :meth:`pause`. Any thread."""
        self.pause(None)

    @property
    def paused(self) -> bool:
        """True while :meth:`pause` holds a picture."""
        return self._pause_frame is not None

    def status(
        self,
        since: Snapshot | None = None,
        until: Snapshot | None = None,
        *,
        last: int | None = None,
        excluding: Sink | None = None,
    ) -> Status:
        """The mode, pause and idle state, each output's viewers (leaving out
        ``excluding``: a frame tap that is no output of its own) and the metrics'
        :meth:`~mattecam.metrics.Metrics.summary` (``since``, ``until``, ``last``). Any
        thread."""
        return Status(
            live=self.live,
            paused=self.paused,
            idle=self.idle.is_set(),
            viewers=[s.viewers for s in self.sinks if s is not excluding],
            summary=self.metrics.summary(since, until, last=last),
        )

    @property
    def expected_frames(self) -> int | None:
        """How many frames the input announced (a file), else None."""
        expected: int | None = getattr(self.source, "expected_frames", None)
        return expected

    def files(self) -> list[tuple[Path, int]]:
        """Each output file and the frames written to it so far."""
        return [(s.path, s.frames_written) for s in self.sinks if isinstance(s, FileSink)]

    def stop(self) -> None:
        """Ask every thread to finish; safe from any thread and from signal handlers."""
        self.stop_event.set()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except SlotClosed:
                pass  # the other side shut down
            except BaseException as e:
                if not isinstance(e, MattecamError):
                    log.debug("%s thread failed", threading.current_thread().name, exc_info=True)
                self._errors.append(e)
                self.stop_event.set()

        return run

    def _put(self, slot: Slot[Frame], frame: Frame) -> bool:
        """Hand ``frame`` on; in lossless mode wait for room unless stopping."""
        while not slot.put(frame, timeout=POLL):
            if self.stop_event.is_set():
                return False
        return True

    def _capture(self) -> None:
        released = False
        try:
            while not self.stop_event.is_set():
                if self.idle.is_set():
                    if self.source.release_when_idle and not released:
                        self.source.close()
                        released = True
                        log.info("nobody is watching: %s released", self.source.describe())
                    self.stop_event.wait(POLL)
                    continue
                if released:
                    self.source.open()
                    released = False
                    log.info("someone is watching: %s opened again", self.source.describe())
                frame = self.source.read()
                if frame is None:
                    log.info("end of input after %d frames", self.metrics.captured)
                    return
                self.metrics.captured += 1
                if not self._put(self._in, frame):
                    return
                self.metrics.dropped_before_process = self._in.dropped
        finally:
            self._in.close()

    def _process(self) -> None:
        try:
            while not self.stop_event.is_set():
                frame = self._in.get(timeout=POLL)
                if frame is None or self._pause_frame is not None:
                    continue  # paused: frames are taken (newest wins) but not processed
                out = self.processor.process(frame)
                self.metrics.processed += 1
                if not self._put(self._out, out):
                    return
                self.metrics.dropped_before_output = self._out.dropped
        finally:
            self._out.close()

    def _write(self, frame: Frame, *, repeat: bool) -> None:
        t = time.perf_counter()
        for sink in self.sinks:
            sink.write(frame)
        m = self.metrics
        m.written += 1
        if repeat:
            m.repeats += 1
        else:
            frame.timings["write"] = (time.perf_counter() - t) * 1e3
            m.record_written(frame.timings, (time.monotonic() - frame.t_capture) * 1e3)
        if any(s.stop_requested for s in self.sinks):
            self.stop_event.set()

    def _output(self) -> None:
        if not self.live:
            while not self.stop_event.is_set():
                frame = self._out.get(timeout=POLL)
                if frame is not None:
                    self._write(frame, repeat=False)
            return
        clock = OutputClock(1.0 / self.fps)
        last: Frame | None = None  # the frame to repeat; None: the placeholder, if any
        while not self.stop_event.is_set():
            if self._update_idle():
                last = None  # after a pause, show the placeholder, not a stale picture
            now = time.monotonic()
            pause = self._pause_frame
            if pause is not None:
                self._out.get(timeout=0)  # a frame finished just before the pause: drop it
                if wait := clock.until_pause(now):
                    self.stop_event.wait(min(wait, POLL))
                else:
                    clock.wrote_pause(now)
                    self._write(pause, repeat=True)
                last = None  # on resume, fill with the placeholder until a fresh frame
                continue
            has_fill = last is not None or self._placeholder is not None
            wait = clock.until_repeat(now) if has_fill else POLL
            frame = self._out.get(timeout=min(wait, POLL))
            now = time.monotonic()
            if frame is not None and not self.idle.is_set():
                if hold := clock.hold(now):
                    self.stop_event.wait(hold)
                    frame = self._out.get(timeout=0) or frame  # a newer one supersedes it
                    now = time.monotonic()
                last = frame
                clock.wrote_new(now)
                self._write(frame, repeat=False)
            elif has_fill and clock.until_repeat(now) == 0:
                # Processing is late (or paused): keep consumers fed, on cadence.
                clock.wrote_repeat(now)
                if last is not None:
                    self._write(last, repeat=True)
                elif self._placeholder is not None:
                    self._write_placeholder(self._placeholder)

    def _write_placeholder(self, frame: Frame) -> None:
        for sink in self.sinks:
            if sink.wants_placeholder:
                sink.write(frame)
        self.metrics.placeholders += 1

    def _update_idle(self) -> bool:
        """Re-read the sinks' viewer counts; True when the pipeline just went idle."""
        if self.always_on:
            return False
        counts = [s.viewers for s in self.sinks]
        idle = bool(counts) and all(c == 0 for c in counts)
        if idle == self.idle.is_set():
            return False
        if idle:
            self.idle.set()
            log.info("no one is watching the output: pausing")
            return True
        self.idle.clear()
        log.info("someone started watching the output: resuming")
        return False


def _picture(image: Image) -> Picture:
    """A still written over and over (placeholder, pause picture) in the layout frames have,
    converted once so that no output converts it again per frame."""
    h, w = image.shape[:2]
    return I420.from_bgr(image) if w % 2 == 0 and h % 2 == 0 else image
