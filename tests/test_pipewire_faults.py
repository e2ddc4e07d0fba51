"""Faults around the PipeWire camera (issue 12), in a private session (tests/pwsession.py).

The producer is a real :class:`PipeWireSink` in this process, written on a 30 fps clock by
:func:`pump` as the pipeline's output thread would; the consumers are real PipeWire
clients. Connect/disconnect cycles and simultaneous consumers use :class:`Consumer`, a
libpipewire input stream in this process (linked by WirePlumber like any app), because
starting ``gst-launch-1.0`` costs about 0.5 s a time and 100 of them would take about a
minute; the stalled consumer and the reader after a daemon restart are
``gst-launch-1.0 pipewiresrc`` processes. The last test runs the ``mattecam`` command
through a daemon restart. Every wait is bounded.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import write_clip
from mattecam.frame import Frame
from mattecam.sinks import pipewire as pw
from mattecam.sinks.pipewire import PipeWireSink
from pwsession import PipeWireSession, pw_session, stop

__all__ = ["pw_session"]  # a fixture, used by name

NODE = "mattecamfaults"
SIZE = (320, 240)
FPS = 30.0
#: The longest one write() may take, even while the daemon restarts: a retry costs a
#: socket probe and a stream creation (measured: at most 17 ms, once a second, on 2 cores;
#: a normal write is under 2 ms at 320x240; 75 ms seen once with the machine's two cores
#: busy with other work). What this catches is a write that waits for a consumer or the
#: daemon, which lasts as long as they do (seconds, or for ever when one stalls), not a
#: busy scheduler's tens of milliseconds.
WRITE_BOUND_MS = 500.0
MATTECAM = [sys.executable, "-m", "mattecam"]

_PROCESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
AUTOCONNECT = 1 << 0
DIRECTION_INPUT = 0


class Consumer:
    """A video consumer of the node ``target``: a libpipewire input stream in this
    process that counts the frames it receives with data (``frames``). ``close()`` leaves."""

    def __init__(self, target: str) -> None:
        lib = pw.load_library()
        self._lib = lib
        self.frames = 0
        self._loop = lib.pw_thread_loop_new(b"test-consumer", None)
        self._events = pw._StreamEvents(version=2)
        self._cb = _PROCESS(self._on_process)
        self._events.process = ctypes.cast(self._cb, ctypes.c_void_p).value
        props = lib.pw_properties_new(None)
        for key, value in [
            ("media.type", "Video"),
            ("media.category", "Capture"),
            ("media.role", "Camera"),
            ("target.object", target),
        ]:
            lib.pw_properties_set(props, key.encode(), value.encode())
        self._stream = lib.pw_stream_new_simple(
            lib.pw_thread_loop_get_loop(self._loop),
            b"test-consumer",
            props,
            ctypes.byref(self._events),
            None,
        )
        assert self._stream
        fmt = pw.enum_format_pod(*SIZE, pw.Fraction(int(FPS)), next(iter(pw.VIDEO_FORMATS)))
        self._pod = ctypes.create_string_buffer(fmt, len(fmt))
        self._params = (ctypes.c_void_p * 1)(ctypes.cast(self._pod, ctypes.c_void_p).value)
        lib.pw_thread_loop_start(self._loop)
        lib.pw_thread_loop_lock(self._loop)
        try:
            res = lib.pw_stream_connect(
                self._stream,
                DIRECTION_INPUT,
                pw.ID_ANY,
                AUTOCONNECT | pw.FLAG_MAP_BUFFERS,
                self._params,
                1,
            )
        finally:
            lib.pw_thread_loop_unlock(self._loop)
        assert res >= 0, res

    def _on_process(self, _data: int | None) -> None:  # the consumer's loop thread
        ptr = self._lib.pw_stream_dequeue_buffer(self._stream)
        if not ptr:
            return
        d = pw._PwBuffer.from_address(ptr).buffer.contents.datas[0]
        if d.data and d.chunk.contents.size > 0:
            self.frames += 1
        self._lib.pw_stream_queue_buffer(self._stream, ptr)

    def close(self) -> None:
        lib, stream, loop = self._lib, self._stream, self._loop
        if stream is None:
            return
        self._stream = None
        lib.pw_thread_loop_lock(loop)
        try:
            lib.pw_stream_disconnect(stream)
            lib.pw_stream_destroy(stream)
        finally:
            lib.pw_thread_loop_unlock(loop)
        lib.pw_thread_loop_stop(loop)
        lib.pw_thread_loop_destroy(loop)


class Pump:
    """Writes frames to ``sink`` on a ``FPS`` clock, as the output thread does, keeping
    each write()'s duration in ms (``durations``) and the frames offered (``ticks``)."""

    def __init__(self, sink: PipeWireSink) -> None:
        self.sink = sink
        self.durations: list[float] = []
        self.ticks = 0
        w, h = SIZE
        self._image = np.full((h, w, 3), (255, 102, 51), np.uint8)
        self._next = time.monotonic()

    def run(self, seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
        """Write for at most ``seconds``; True as soon as ``until()`` is (checked each tick)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until():
                return True
            frame = Frame(image=self._image, seq=self.ticks, t_capture=time.monotonic())
            t = time.perf_counter()
            self.sink.write(frame)
            self.durations.append((time.perf_counter() - t) * 1e3)
            self.ticks += 1
            self._next = max(self._next + 1 / FPS, time.monotonic() - 1 / FPS)
            time.sleep(max(0.0, self._next - time.monotonic()))
        return until()

    def worst(self) -> float:
        return max(self.durations, default=0.0)


@pytest.fixture
def sink(pw_session: PipeWireSession, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipeWireSink]:
    """The camera node, published from this process into the private session."""
    pw_session.apply(monkeypatch)
    s = PipeWireSink(NODE, "mattecam faults")
    s.check()
    s.open(SIZE, FPS)
    try:
        assert pw_session.wait_node(NODE), pw_session.logs()
        yield s
    finally:
        s.close()


def test_100_consumers_connect_and_leave(sink: PipeWireSink) -> None:
    pump = Pump(sink)
    t0 = time.monotonic()
    for i in range(100):
        c = Consumer(NODE)
        try:
            assert pump.run(5, lambda c=c: c.frames >= 1), f"cycle {i}: no frame within 5 s"
        finally:
            c.close()
    elapsed = time.monotonic() - t0
    assert pump.run(2, lambda: sink.viewers == 0), "the last consumer never left"
    print(f"100 cycles in {elapsed:.1f} s, {pump.ticks} writes, worst {pump.worst():.1f} ms")
    assert pump.worst() < WRITE_BOUND_MS
    # Still publishing: one more consumer gets a steady stream.
    c = Consumer(NODE)
    try:
        assert pump.run(5, lambda: c.frames >= 10)
    finally:
        c.close()


def test_two_consumers_at_once(sink: PipeWireSink) -> None:
    pump = Pump(sink)
    a, b = Consumer(NODE), Consumer(NODE)
    try:
        assert pump.run(5, lambda: a.frames >= 1 and b.frames >= 1), (a.frames, b.frames)
        start = (a.frames, b.frames)
        pump.run(1.0)
        got = (a.frames - start[0], b.frames - start[1])
        print(f"in 1 s at {FPS:.0f} fps: {got} frames")
        # Both fed (30 on an idle machine): a consumer left out gets none, a busy machine
        # costs a few.
        assert min(got) >= 10, got
        a.close()
        n = b.frames
        assert pump.run(2, lambda: b.frames >= n + 15), "the other consumer stopped with it"
    finally:
        a.close()
        b.close()
    assert pump.worst() < WRITE_BOUND_MS


def _gst_reader(session: PipeWireSession, *sink_args: str) -> subprocess.Popen[bytes]:
    return session.spawn(
        "gst-launch-1.0", "-q", "pipewiresrc", f"target-object={NODE}", "!", "video/x-raw",
        "!", *sink_args,
    )  # fmt: skip


def test_a_stalled_consumer_never_blocks_the_writer(
    sink: PipeWireSink, pw_session: PipeWireSession
) -> None:
    pump = Pump(sink)
    reader = _gst_reader(pw_session, "fakesink")
    try:
        assert pump.run(10, lambda: sink.viewers == 1), pw_session.logs()
        assert pump.run(5, lambda: sink.frames_written >= 10)
        reader.send_signal(signal.SIGSTOP)  # it stops reading, answering nothing
        written, dropped, ticks = sink.frames_written, sink.frames_dropped, pump.ticks
        t0 = time.monotonic()
        pump.run(2.0)
        elapsed = time.monotonic() - t0
        offered = pump.ticks - ticks
        print(
            f"stalled 2 s: {offered} writes ({offered / elapsed:.1f}/s), "
            f"{sink.frames_written - written} sent, {sink.frames_dropped - dropped} dropped, "
            f"worst write {pump.worst():.2f} ms"
        )
        # The writer keeps going (30/s on an idle machine); a blocked one would stop at once.
        assert offered / elapsed > FPS * 0.5
        assert pump.worst() < WRITE_BOUND_MS
        # A consumer that arrives meanwhile is served.
        c = Consumer(NODE)
        try:
            served = pump.run(5, lambda: c.frames >= 5)
        finally:
            c.close()
        print(f"a new consumer beside the stalled one: {c.frames} frames")
        assert served
    finally:
        reader.send_signal(signal.SIGCONT)
        stop(reader)
    assert pump.run(5, lambda: sink.viewers == 0)


def test_daemon_restart_republishes(
    sink: PipeWireSink, pw_session: PipeWireSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="mattecam")
    pump = Pump(sink)
    c = Consumer(NODE)
    try:
        assert pump.run(5, lambda: c.frames >= 3)
    finally:
        c.close()
    for sig in (signal.SIGTERM, signal.SIGKILL):  # a clean stop, and a daemon that dies
        caplog.clear()
        pw_session.stop_pipewire(sig)
        pump.run(1.5)  # no daemon: writes go on, dropped
        assert sink.viewers == 0
        t0 = time.monotonic()
        pw_session.start_pipewire()
        back = pump.run(10, lambda: sink._state >= pw.STATE_PAUSED and not sink._lost)
        took = time.monotonic() - t0
        messages = [r.getMessage() for r in caplog.records]
        print(f"{sig.name}: republished {took:.2f} s after the restart; {messages}")
        assert back, (messages, pw_session.logs())
        assert sum("PipeWire went away" in m for m in messages) == 1, messages
        assert sum("republished the camera" in m for m in messages) == 1, messages
        assert pw_session.wait_node(NODE)
        c = Consumer(NODE)
        try:
            assert pump.run(10, lambda c=c: c.frames >= 10), "no frames after the restart"
        finally:
            c.close()
    print(f"worst write {pump.worst():.2f} ms over {pump.ticks} writes")
    assert pump.worst() < WRITE_BOUND_MS


@pytest.mark.slow
def test_mattecam_survives_a_daemon_restart(
    pw_session: PipeWireSession, tmp_path: Path, model_cache: Path
) -> None:
    """The command, not only the sink: it keeps running, the node reappears (with the
    description ``-o`` set), a ``pipewiresrc`` reader gets frames again, and SIGTERM still
    ends it cleanly."""
    clip = write_clip(tmp_path / "clip.mp4", n=30, size=SIZE, fps=30)
    logpath = tmp_path / "mattecam.log"
    with logpath.open("wb") as logf:
        proc = subprocess.Popen(
            [
                *MATTECAM,
                "-i",
                str(clip),
                "--loop",
                "-o",
                f"pipewire:{NODE}:Office cam",
                "-b",
                "green",
            ],
            env=pw_session.env,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )

    def read(n: int) -> int:
        out = tmp_path / "frames.raw"
        r = subprocess.run(
            [
                "gst-launch-1.0", "-q", "pipewiresrc", f"target-object={NODE}",
                f"num-buffers={n}", "!", "video/x-raw,format=I420", "!", "filesink",
                f"location={out}",
            ],
            env=pw_session.env, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        return out.stat().st_size // (SIZE[0] * SIZE[1] * 3 // 2) if r.returncode == 0 else -1

    try:
        assert pw_session.wait_node(NODE, timeout=30), logpath.read_text()
        assert read(10) == 10
        pw_session.restart_pipewire(signal.SIGKILL)
        nodes = pw_session.wait_node(NODE, timeout=15)
        assert nodes, logpath.read_text()
        info = nodes[0]["info"]
        assert isinstance(info, dict)
        assert info["props"]["node.description"] == "Office cam"  # -o pipewire:NAME:DESCRIPTION
        assert proc.poll() is None, logpath.read_text()
        assert read(10) == 10, logpath.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143, logpath.read_text()
        text = logpath.read_text()
        assert "Traceback" not in text, text
        assert "PipeWire went away" in text and "republished the camera" in text, text
    finally:
        stop(proc)
