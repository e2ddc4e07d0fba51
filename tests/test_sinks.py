"""File, null and preview outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import read_frames
from mattecam.errors import ConfigError, InputNotFoundError, SinkError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.sinks import FileSink, NullSink, PreviewSink, V4L2LoopbackSink, make_sink


def frames(n: int, size: tuple[int, int] = (96, 64)) -> list[Frame]:
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        img[:, : (i * 7) % w] = (200, 60, 20)
        out.append(Frame(img, i, time.monotonic()))
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_file_sink_writes_playable_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    sink = FileSink(path)
    sink.open((96, 64), 25.0)
    for f in frames(20):
        sink.write(f)
    assert not path.exists()  # written under a temporary name until closed
    sink.close()
    sink.close()  # idempotent
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert float(s.average_rate) == pytest.approx(25)
        assert (s.width, s.height) == (96, 64)
    got = read_frames(path)
    assert len(got) == 20
    want = frames(20)
    assert np.abs(got[10].astype(int) - want[10].image).mean() < 6


def test_file_sink_keeps_ntsc_rate_and_writes_odd_sizes_even(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    sink = FileSink(path)
    sink.open((95, 63), 30000 / 1001)
    for f in frames(5, (95, 63)):
        sink.write(f)
    sink.close()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.average_rate == Fraction(30000, 1001)
        assert (s.width, s.height) == (94, 62)  # 4:2:0, which every player opens
        assert s.codec_context.pix_fmt == "yuv420p"


def test_file_sink_abort_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    sink = FileSink(path)
    sink.open((96, 64), 25.0)
    for f in frames(3):
        sink.write(f)
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_file_sink_without_frames_creates_nothing(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out.mp4")
    sink.open((96, 64), 25.0)
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_file_sink_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="unsupported file type"):
        FileSink(tmp_path / "out.gifx")
    with pytest.raises(InputNotFoundError, match="does not exist"):  # a usage error
        FileSink(tmp_path / "no" / "dir" / "out.mp4").open((64, 64), 25)
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(SinkError, match="directory"):
        FileSink(tmp_path / "d.mp4").open((64, 64), 25)


def test_unwritable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/out.mp4")  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "out.mp4"
    with pytest.raises(SinkError, match="writable"):
        FileSink(target).open((64, 64), 25)


def test_null_sink_counts() -> None:
    sink = NullSink()
    sink.open((10, 10), 30)
    for f in frames(4, (10, 10)):
        sink.write(f)
    sink.close()
    assert sink.frames_written == 4


def test_make_sink() -> None:
    assert isinstance(make_sink("null"), NullSink)
    assert isinstance(make_sink("x.mp4"), FileSink)
    with pytest.raises(ConfigError, match="unknown output"):
        make_sink("out.txt")
    sink = make_sink("/dev/video99", output_format="nv12")
    assert isinstance(sink, V4L2LoopbackSink)
    assert sink.pixel_format.fourcc == "NV12"
    with pytest.raises(InputNotFoundError, match="modprobe v4l2loopback"):
        sink.open((64, 64), 30)


def test_preview_without_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="DISPLAY"):
        PreviewSink().open((64, 64), 30)


@pytest.fixture
def xvfb(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real X server (Xvfb) for the preview window."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    display = f":{90 + os.getpid() % 50}"
    proc = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    monkeypatch.setenv("DISPLAY", display)
    yield display
    proc.terminate()
    proc.wait(5)


def test_preview_shows_frames_and_quits_on_q(xvfb: str) -> None:
    sink = PreviewSink(title="mattecam-test")
    sink.open((96, 64), 30)
    try:
        for f in frames(10):
            sink.write(f)
            time.sleep(0.03)
        deadline = time.monotonic() + 5
        while sink.frames_shown == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.frames_shown > 0
        assert not sink.stop_requested
        if shutil.which("xdotool"):
            subprocess.run(
                [
                    "xdotool",
                    "search",
                    "--sync",
                    "--name",
                    "mattecam-test",
                    "windowfocus",
                    "--sync",
                    "key",
                    "q",
                ],
                check=True,
                timeout=10,
            )
            deadline = time.monotonic() + 5
            while not sink.stop_requested and time.monotonic() < deadline:
                time.sleep(0.02)
            assert sink.stop_requested
    finally:
        sink.close()
    assert sink._thread is None
