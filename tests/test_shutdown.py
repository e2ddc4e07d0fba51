"""Nothing lost, nothing hangs: signals, closed pipes, outputs that would overwrite what the
run reads, one output failing while finishing, a worker stuck in a driver call.

Signals are real signals sent to a real ``mattecam`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import read_frames, write_clip
from fakes import FakeSegmenter
from mattecam import pipeline as pipeline_module
from mattecam.compositing import ColorBackground
from mattecam.errors import PipelineStuckError, SinkError
from mattecam.frame import Frame
from mattecam.matte import BilinearRefiner
from mattecam.matte.stage import MatteStage
from mattecam.pipeline import Pipeline
from mattecam.process import FrameProcessor
from mattecam.sinks import FileSink, NullSink
from mattecam.sources import FileSource

MATTECAM = [sys.executable, "-m", "mattecam"]
LONG_FRAMES = 600  # at 1280x720: several seconds of batch work, time to send signals


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MATTECAM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1280x720 clip long enough that a batch run is still going when signalled."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_clip(path, n=LONG_FRAMES, size=(1280, 720), fps=30)


def hidden(directory: Path) -> list[str]:
    """Temporary (partial) files mattecam left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def start(*args: str) -> subprocess.Popen[str]:
    """A mattecam run with -v, returned once its outputs are open and frames flow."""
    proc = subprocess.Popen(
        [*MATTECAM, *args, "-v"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    for line in proc.stderr:
        if line.startswith("mattecam: output:") or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be signalled"
    return proc


def finish(proc: subprocess.Popen[str]) -> str:
    """The rest of the run's stderr, once it exited (bounded)."""
    _, err = proc.communicate(timeout=60)
    return err


def complete_or_absent(out: Path, err: str) -> int:
    """The output is either absent or a complete, playable file with as many frames as the
    run said it wrote; never a partial file. Returns the frame count (0 when absent)."""
    assert hidden(out.parent) == [], err
    if not out.exists():
        return 0
    frames = read_frames(out)
    assert len(frames) > 0, err
    assert f"holds the {len(frames)} " in err, err
    return len(frames)


# Signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_on_a_batch_run_finishes_the_file_and_says_so(
    tmp_path: Path, long_clip: Path, sig: signal.Signals, model_cache: Path
) -> None:
    out = tmp_path / "out.mp4"
    proc = start("-i", str(long_clip), "-o", str(out))
    proc.send_signal(sig)
    err = finish(proc)
    assert proc.returncode == 128 + sig, err  # the shell's convention, not 0
    n = complete_or_absent(out, err)
    assert 0 < n < LONG_FRAMES, err
    assert f"stopped by {sig.name}: {out} holds the {n} of {LONG_FRAMES} frames" in err


@pytest.mark.parametrize("gap", [0.0, 0.02, 0.2])
def test_two_ctrl_c_close_together_still_leave_a_playable_file(
    tmp_path: Path, long_clip: Path, model_cache: Path, gap: float
) -> None:
    """The second Ctrl-C used to land inside the file's finishing code, leaving only the
    hidden partial file."""
    out = tmp_path / "out.mp4"
    proc = start("-i", str(long_clip), "-o", str(out))
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    err = finish(proc)
    # -SIGINT: the second came while the interpreter was exiting; a shell shows 130 too.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert complete_or_absent(out, err) > 0  # a second Ctrl-C changes nothing


def test_three_signals_give_up_at_once_and_leave_nothing_half_written(
    tmp_path: Path, long_clip: Path, model_cache: Path
) -> None:
    out = tmp_path / "out.mp4"
    proc = start("-i", str(long_clip), "-o", str(out))
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    err = finish(proc)
    # -SIGINT: the last one came while the interpreter was exiting; a shell shows 130 too.
    assert proc.returncode in (130, -signal.SIGINT), err
    complete_or_absent(out, err)


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_a_signal_at_any_moment_of_start_up_leaves_no_debris(
    tmp_path: Path, long_clip: Path, model_cache: Path, delay: float
) -> None:
    """Imports, config, model loading, opening the outputs: wherever SIGTERM lands, the run
    ends with the signal's status and the output is complete or absent."""
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [*MATTECAM, "-i", str(long_clip), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode in (143, -signal.SIGTERM), err  # -15: before the handlers existed
    assert "Traceback" not in err
    complete_or_absent(out, err)


# Standard streams


def test_a_closed_status_pipe_does_not_stop_the_video(
    tmp_path: Path, long_clip: Path, model_cache: Path
) -> None:
    """``mattecam -v ... 2>&1 | head -3``: once the reader is gone, messages are dropped,
    the run goes on and the file is complete."""
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [*MATTECAM, "-i", str(long_clip), "-o", str(out), "-v", "--width", "320"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for _ in range(3):
        proc.stderr.readline()
    proc.stderr.close()  # like `head -3` exiting
    assert proc.wait(timeout=180) == 0
    assert len(read_frames(out)) == LONG_FRAMES
    assert hidden(tmp_path) == []


def test_closed_stderr_does_not_crash(tmp_path: Path, clip: Path, model_cache: Path) -> None:
    """``mattecam ... 2>&-``: used to crash loading the model (sys.stderr is None)."""
    out = tmp_path / "out.mp4"
    r = subprocess.run(
        [*MATTECAM, "-i", str(clip), "-o", str(out), "-v"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(2),
    )
    assert r.returncode == 0, r.stdout
    assert len(read_frames(out)) == 12
    assert r.stdout == ""  # nothing meant for stderr went to stdout or into the file


# Outputs that would destroy what the run reads


def same_file_cases(tmp: Path, clip: Path) -> Iterator[tuple[str, list[str]]]:
    (tmp / "link.mp4").symlink_to(clip)
    os.link(clip, tmp / "hard.mp4")
    os.chdir(tmp)
    yield "the input itself", ["-i", str(clip), "-o", str(clip)]
    yield "through ./", ["-i", str(clip), "-o", f"./{clip.name}"]
    yield "a symlink to the input", ["-i", str(clip), "-o", str(tmp / "link.mp4")]
    yield "a hard link to the input", ["-i", str(clip), "-o", str(tmp / "hard.mp4")]
    yield "the background video", ["-i", str(clip), "-b", "link.mp4", "-o", "hard.mp4"]
    yield "two outputs, one file", ["-i", str(clip), "-o", "o.mp4", "-o", str(tmp / "o.mp4")]


def test_an_output_that_is_the_input_is_refused_before_anything_opens(
    tmp_path: Path, clip: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = clip.read_bytes()
    cases = list(same_file_cases(tmp_path, clip))
    listing = sorted(p.name for p in tmp_path.iterdir())
    for what, args in cases:
        r = subprocess.run(
            [*MATTECAM, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert r.returncode == 2, (what, r.stderr)  # a usage error
        assert r.stderr.startswith("mattecam: error: -o "), (what, r.stderr)
        assert "Traceback" not in r.stderr
        assert clip.read_bytes() == before, what
        assert sorted(p.name for p in tmp_path.iterdir()) == listing, what


# One output failing must not destroy another


class FailsWhileFinishing(NullSink):
    """An output whose finishing fails, like a file on a disk that just filled up."""

    def close(self) -> None:
        raise SinkError("finishing full.mp4 failed: [Errno 28] No space left on device")


@pytest.fixture
def processor() -> FrameProcessor:
    """The fake model: what these in-process runs test is how the outputs finish and how
    threads end, not the model (the ``mattecam`` runs here use the real one)."""
    return FrameProcessor(
        MatteStage(FakeSegmenter(), BilinearRefiner()), ColorBackground((0, 255, 0))
    )


@pytest.mark.parametrize("order", ["good first", "failing first"])
def test_an_output_failing_to_finish_leaves_the_others_complete(
    tmp_path: Path, clip: Path, processor: FrameProcessor, order: str
) -> None:
    good = FileSink(tmp_path / "good.mp4")
    sinks = [good, FailsWhileFinishing()]
    if order == "failing first":
        sinks.reverse()
    p = Pipeline(FileSource(clip), processor, sinks, live=False)
    with pytest.raises(SinkError, match="No space left"):
        p.run()
    assert len(read_frames(tmp_path / "good.mp4")) == 12
    assert hidden(tmp_path) == []


def run_with_small_disk(disk: Path, size: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run mattecam with a ``size`` tmpfs mounted on ``disk`` (in a private mount namespace
    when not root); skip when this machine allows neither."""
    mount = f"mount -t tmpfs -o size={size} tmpfs {disk}"
    prefix = [] if os.geteuid() == 0 else ["unshare", "-rm"]
    probe = subprocess.run(
        [*prefix, "unshare", "-m", "sh", "-c", f"{mount} && umount {disk}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    cmd = " ".join(f"'{a}'" for a in [*MATTECAM, *args])
    return subprocess.run(
        [*prefix, "unshare", "-m", "sh", "-c", f"{mount} && exec {cmd}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("order", ["good first", "full first"])
def test_a_full_disk_for_one_output_spares_the_other(
    tmp_path: Path, model_cache: Path, order: str
) -> None:
    """Real ENOSPC: the ~10 KB output of a short clip stays in the encoder's and the
    writer's buffers until the end, so the output on the 4 KiB disk fails while finishing;
    the output on the roomy disk stays complete."""
    rng = np.random.default_rng(1)

    def noise(i: int, img: np.ndarray) -> None:
        img[40:64, 40:64] = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)

    clip = write_clip(tmp_path / "noisy.mp4", n=24, draw=noise)
    disk = tmp_path / "disk"
    disk.mkdir()
    good, full = tmp_path / "good.mp4", disk / "full.mp4"
    outputs = [str(good), str(full)] if order == "good first" else [str(full), str(good)]
    r = run_with_small_disk(disk, "4k", "-i", str(clip), "-o", outputs[0], "-o", outputs[1])
    assert r.returncode == 1, r.stderr
    assert "No space left" in r.stderr and "Traceback" not in r.stderr
    assert len(read_frames(good)) == 24
    assert hidden(tmp_path) == []


# A worker that never returns


class StuckSink(NullSink):
    """An output whose write blocks (a driver call that never returns) until released;
    records whether it was closed while a write was still in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()
        self.closed_while_writing = False
        self.closed = False

    def write(self, frame: Frame) -> None:
        self.writing.set()
        self.release.wait(30)
        self.writing.clear()

    def close(self) -> None:
        self.closed = True
        self.closed_while_writing = self.writing.is_set()


class ClosingRecorder(FileSource):
    closed_at: float | None = None

    def close(self) -> None:
        self.closed_at = time.monotonic()
        super().close()


def test_a_stuck_thread_keeps_its_resources_and_the_run_fails_clearly(
    tmp_path: Path, clip: Path, processor: FrameProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "JOIN_TIMEOUT", 0.5)
    stuck = StuckSink()
    source = ClosingRecorder(clip)
    p = Pipeline(source, processor, [stuck], live=False)

    def stop_once_stuck() -> None:
        if stuck.writing.wait(60):
            p.stop()  # Ctrl-C while the output thread hangs in the driver

    threading.Thread(target=stop_once_stuck, name="test-stopper", daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(PipelineStuckError, match="output"):
            p.run()
        assert time.monotonic() - t0 < 20  # it does not hang with the thread
        assert not stuck.closed  # never closed under the thread that still writes to it
        assert source.closed_at is not None  # what the ended threads used was released
    finally:
        stuck.release.set()
    assert not stuck.closed_while_writing


# Exit codes and rates


def test_fps_on_a_file_to_file_run_keeps_the_duration(
    tmp_path: Path, clip: Path, model_cache: Path
) -> None:
    import av

    out = tmp_path / "out.mp4"
    r = run("-i", str(clip), "-o", str(out), "--fps", "10")
    assert r.returncode == 0, r.stderr
    assert "keeps the input's frame rate" in r.stderr
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(24, abs=0.1)
    assert len(read_frames(out)) == 12


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--blur", "200"], 2),
        (["-b", "notacolour"], 2),
        (["--model", "foo"], 2),
        (["-b", "{tmp}/missing.jpg"], 2),
        (["--config", "{tmp}/missing.toml"], 2),
        (["--width", "3"], 2),
        (["--no-such-flag"], 2),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, clip: Path, args: list[str], code: int, model_cache: Path
) -> None:
    r = run("-i", str(clip), "-o", "null", *(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr


def test_help_states_the_exit_codes() -> None:
    r = run("--help")
    assert "Exit status:" in r.stdout and "128+N" in r.stdout and "usage error" in r.stdout
