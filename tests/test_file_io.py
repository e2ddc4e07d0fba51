"""Video files in and out when things go wrong: killed runs, interrupts, read-only and odd-sized
outputs, truncated inputs."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from conftest import read_frames
from mattecam.errors import SinkError, SourceError
from mattecam.frame import Frame
from mattecam.imaging.yuv import I420
from mattecam.sinks import FileSink
from mattecam.sources import FileSource
from mattecam.sources import file as source_file


def frames(n: int, size: tuple[int, int] = (96, 64)) -> list[Frame]:
    """Frames with a left band growing by 7 px a frame and a distinct last column / row."""
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        img[:, : (i * 7) % w] = (200, 60, 20)
        img[:, -1] = (0, 255, 0)
        img[-1, :] = (0, 0, 255)
        out.append(Frame(img, i, time.monotonic()))
    return out


def write_file(path: Path, n: int = 5, size: tuple[int, int] = (96, 64)) -> FileSink:
    sink = FileSink(path)
    sink.open(size, 25.0)
    for f in frames(n, size):
        sink.write(f)
    sink.close()
    return sink


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# --- FileSink: temporary names ----------------------------------------------------------


def test_stale_partials_are_removed_and_never_collide(tmp_path: Path) -> None:
    dead, me = dead_pid(), os.getpid()
    stale = {
        f".out.partial-{dead}.mp4",  # a killed run of an earlier version
        f".out.partial-{dead}-0badc0de.mp4",  # a killed run
        f".out.partial-{me}.mp4",  # a killed run whose PID we now have: used to collide
    }
    kept = {
        ".out.partial-1.mp4",  # PID 1 runs: its file is being written
        f".out.partial-{dead}.mp4.bak",  # not the exact pattern
        f".other.partial-{dead}.mp4",  # another output's partial
        f"out.partial-{dead}.mp4",
        "notes.txt",
    }
    for name in stale | kept:
        (tmp_path / name).write_bytes(b"x")
    write_file(tmp_path / "out.mp4")
    assert names(tmp_path) == kept | {"out.mp4"}
    assert len(read_frames(tmp_path / "out.mp4")) == 5


def test_two_writers_of_one_output_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    a, b = FileSink(path), FileSink(path)
    a.open((96, 64), 25.0)
    b.open((96, 64), 25.0)  # must not fail, nor take a's live file for a stale one
    assert len(names(tmp_path)) == 2
    for sink in (a, b):
        for f in frames(3):
            sink.write(f)
        sink.close()
    assert names(tmp_path) == {"out.mp4"}
    assert len(read_frames(path)) == 3


# --- FileSink: existing output files -----------------------------------------------------


def test_read_only_output_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"precious")
    path.chmod(0o444)
    with pytest.raises(SinkError, match=r"read-only; remove it or choose another -o"):
        FileSink(path).open((96, 64), 25.0)
    assert names(tmp_path) == {"out.mp4"}
    assert path.read_bytes() == b"precious"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_replacing_a_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    path.chmod(0o620)  # no umask makes this mode for a new file
    write_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o620
    assert len(read_frames(path)) == 5


# --- FileSink: odd sizes -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_odd_size_is_written_as_even_420(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"out{suffix}"
    with caplog.at_level(logging.WARNING, logger="mattecam"):
        write_file(path, n=5, size=(97, 65))
    assert f"{path}: 97x65 is odd; writing 96x64" in caplog.text
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.pix_fmt, cc.width, cc.height) == ("yuv420p", 96, 64)
    got = read_frames(path)
    assert len(got) == 5
    # The last column and row (green, red) were cropped, not scaled into the picture.
    want = frames(5, (97, 65))[4].image[:64, :96].astype(int)
    assert np.abs(got[4] - want).mean() < 6
    assert np.abs(got[4][:, -1] - want[:, -1]).mean() < 10
    assert np.abs(got[4][-1] - want[-1]).mean() < 10


# --- FileSink: interrupts ----------------------------------------------------------------


class _InterruptedFlush:
    """A stream whose final flush is interrupted (a second Ctrl-C during close())."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def encode(self, frame: Any) -> Any:
        if frame is None:
            raise KeyboardInterrupt
        return self._stream.encode(frame)


class _InterruptedClose:
    """A container whose close() is interrupted (a third Ctrl-C, during abort())."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def mux(self, packet: Any) -> None:
        self._container.mux(packet)

    def close(self) -> None:
        self._container.close()
        raise KeyboardInterrupt


def opened_sink(path: Path) -> FileSink:
    sink = FileSink(path)
    sink.open((96, 64), 25.0)
    for f in frames(5):
        sink.write(f)
    return sink


def test_interrupt_while_finishing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = opened_sink(tmp_path / "out.mp4")
    monkeypatch.setattr(sink, "_stream", _InterruptedFlush(sink._stream))
    with pytest.raises(KeyboardInterrupt):
        sink.close()
    assert names(tmp_path) == set()
    sink.close()  # still idempotent
    sink.abort()
    assert names(tmp_path) == set()


def test_interrupt_while_aborting_still_removes_the_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = opened_sink(tmp_path / "out.mp4")
    monkeypatch.setattr(sink, "_container", _InterruptedClose(sink._container))
    with pytest.raises(KeyboardInterrupt):
        sink.abort()
    assert names(tmp_path) == set()


def test_interrupts_during_close_and_abort_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = opened_sink(tmp_path / "out.mp4")
    monkeypatch.setattr(sink, "_stream", _InterruptedFlush(sink._stream))
    monkeypatch.setattr(sink, "_container", _InterruptedClose(sink._container))
    with pytest.raises(KeyboardInterrupt):
        sink.close()
    assert names(tmp_path) == set()


def test_failure_while_finishing_is_a_sink_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = opened_sink(tmp_path / "out.mp4")

    def fail(_self: Path, _target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(SinkError, match=r"finishing .* failed"):
        sink.close()
    assert names(tmp_path) == set()


# --- FileSource: truncated inputs --------------------------------------------------------

N = 70


def make_clip(path: Path) -> Path:
    """A 70-frame 320x240 clip at 25 fps whose index sits at the front (faststart MP4;
    Matroska always), so that a cut copy still announces the full length."""
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(N):
            img = rng.integers(0, 256, (240, 320, 3), np.uint8)  # every frame costs bytes
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module", params=[".mp4", ".mkv"])
def clips(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``whole{ext}`` and ``cut{ext}`` (its first 40 %)."""
    d = tmp_path_factory.mktemp("clips")
    ext = request.param
    whole = make_clip(d / f"whole{ext}")
    data = whole.read_bytes()
    (d / f"cut{ext}").write_bytes(data[: len(data) * 4 // 10])
    return d


def clip_in(d: Path, name: str) -> Path:
    return next(d.glob(f"{name}.*"))


def read_file(
    path: Path, *, loop: bool = False, limit: int = 1000
) -> tuple[FileSource, list[Frame]]:
    """Open ``path``, read up to ``limit`` frames, close; the (closed) source and frames."""
    src = FileSource(path, loop=loop)
    src.open()
    got: list[Frame] = []
    try:
        while len(got) < limit and (f := src.read()) is not None:
            got.append(f)
    finally:
        src.close()
    return src, got


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_complete_clip_gives_no_warning(clips: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mattecam"):
        src, got = read_file(clip_in(clips, "whole"))
    assert len(got) == N
    assert warnings(caplog) == []
    assert not src.truncated
    assert src.expected_frames == N


def test_truncated_clip_is_played_with_a_warning(
    clips: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = clip_in(clips, "cut")
    with caplog.at_level(logging.WARNING, logger="mattecam"):
        src, got = read_file(path)
    assert 0 < len(got) < N // 2
    (msg,) = warnings(caplog)
    assert msg.startswith(f"{path} ended after {len(got)} ")
    assert "truncated or damaged" in msg
    assert f"the output holds the {len(got)} frames read" in msg
    assert src.truncated
    assert src.expected_frames == N


def test_truncated_clip_warns_once_when_looping(
    clips: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mattecam"):
        src, got = read_file(clip_in(clips, "cut"), loop=True, limit=3 * N)
    assert len(got) == 3 * N  # several passes over what the file holds
    (msg,) = warnings(caplog)
    assert "looping over the" in msg
    assert src.truncated


def test_decoding_error_mid_stream_ends_the_input(
    clips: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = source_file.to_i420
    calls = 0

    def failing(vf: Any) -> I420:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise av.error.InvalidDataError(1094995529, "Invalid data found")
        return real(vf)

    monkeypatch.setattr(source_file, "to_i420", failing)
    with caplog.at_level(logging.WARNING, logger="mattecam"):
        src, got = read_file(clip_in(clips, "whole"))
    assert len(got) == 5  # the frames before the error are kept, not lost to an exception
    (msg,) = warnings(caplog)
    assert "decoding failed: " in msg and "Invalid data found" in msg
    assert src.truncated


def test_decoding_error_at_the_first_frame_is_a_source_error(
    clips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(vf: Any) -> I420:
        raise av.error.InvalidDataError(1094995529, "Invalid data found")

    monkeypatch.setattr(source_file, "to_i420", failing)
    src = FileSource(clip_in(clips, "whole"))
    with pytest.raises(SourceError, match="error decoding"):
        src.open()
    assert src._container is None  # closed on the way out
