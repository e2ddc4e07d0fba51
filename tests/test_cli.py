"""The command line, end to end, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import read_frames, write_clip

MATTECAM = [sys.executable, "-m", "mattecam"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MATTECAM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_explains_every_option() -> None:
    r = run("--help")
    assert r.returncode == 0
    for opt in (
        "--input",
        "--output",
        "--preview",
        "--background",
        "--blur",
        "--width",
        "--height",
        "--fps",
        "--loop",
        "--model",
        "--camera-format",
        "--mirror",
        "--verbose",
        "models",
    ):
        assert opt in r.stdout, opt
    assert "null" in r.stdout and "blur" in r.stdout
    assert run("models", "--help").returncode == 0


def test_models_list_and_verify(model_cache: Path) -> None:
    r = run("models")
    assert r.returncode == 0
    assert "landscape" in r.stdout and "general" in r.stdout
    r = run("models", "verify")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("sha256 verified") == 2


def test_end_to_end_on_a_real_clip(tmp_path: Path, shared_data: Path, model_cache: Path) -> None:
    """A DAVIS clip with hand-made masks: where the mask says background, the output is the
    chosen colour; where it says person, the output mostly keeps the input."""
    clip_dir = shared_data / "videos" / "gt" / "tennis"
    src = clip_dir / "tennis.mp4"
    out = tmp_path / "out.mp4"
    r = run("-i", str(src), "-o", str(out), "-b", "green")
    assert r.returncode == 0, r.stderr
    inputs, outputs = read_frames(src), read_frames(out)
    assert len(outputs) == len(inputs) == 70
    assert outputs[0].shape == inputs[0].shape
    green = np.array([0, 255, 0])
    bg_ok = bg_n = fg_ok = fg_n = 0
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        mask = cv2.imread(str(clip_dir / "masks" / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
        bg, fg = mask == 0, mask > 127
        err_bg = np.abs(b.astype(int) - green).max(axis=2)
        err_fg = np.abs(b.astype(int) - a.astype(int)).max(axis=2)
        bg_ok += np.count_nonzero(err_bg[bg] <= 30)
        bg_n += np.count_nonzero(bg)
        fg_ok += np.count_nonzero(err_fg[fg] <= 30)
        fg_n += np.count_nonzero(fg)
    assert bg_ok / bg_n >= 0.90
    assert fg_ok / fg_n >= 0.5


def _textured_clip(path: Path) -> Path:
    """The usual synthetic clip (no person) with a grey checkerboard over its bottom 36 rows, so
    a blur visibly changes it; luma-only, so 4:2:0 chroma keeps it intact for 'none'."""

    def draw(i: int, img: np.ndarray) -> None:
        yy, xx = np.mgrid[60:96, 0:160]
        img[60:] = np.where((((yy // 8) + (xx // 8)) % 2)[..., None] == 1, 170, 40)

    return write_clip(path, draw=draw)


@pytest.mark.parametrize("background", ["blur", "none", "#3366ff", "image", "video"])
def test_every_background_kind_runs(tmp_path: Path, background: str, model_cache: Path) -> None:
    """Each kind of ``-b`` shows up in the output. The clip holds no person, so the model
    leaves (nearly) the whole frame to the background; the default (green) matches none."""
    from mattecam.imaging import cover_fit

    clip = _textured_clip(tmp_path / "clip.mp4")
    yy, xx = np.mgrid[0:60, 0:60]
    picture = np.dstack([np.full((60, 60), 200), 20 + 3 * yy, 30 + 3 * xx]).astype(np.uint8)
    video_colors = [(60 * i, 200, 220 - 50 * i) for i in range(4)]  # BGR, one per frame
    arg = background
    if background == "image":
        arg = str(tmp_path / "bg.png")  # lossless, so the gradient is compared exactly
        cv2.imwrite(arg, picture)
    elif background == "video":

        def flat(i: int, img: np.ndarray) -> None:
            img[:] = video_colors[i]

        arg = str(write_clip(tmp_path / "bg.mp4", n=4, draw=flat))
    out = tmp_path / "out.mkv"
    r = run(
        "-i",
        str(clip),
        "-o",
        str(out),
        "-b",
        arg,
        "--width",
        "128",
        "--height",
        "72",
        "--model",
        "general",
        "--mirror",
    )
    assert r.returncode == 0, r.stderr
    frames = read_frames(out)
    assert len(frames) == 12
    assert frames[0].shape == (72, 128, 3)
    # The camera picture as the pipeline sees it: covered to 128x72, then mirrored.
    inputs = [cv2.flip(cover_fit(f, 128, 72), 1) for f in read_frames(clip)]

    def close_to(got: np.ndarray, want: np.ndarray) -> None:
        """Nearly every pixel within codec noise (H.264 at crf 20) of ``want``."""
        err = np.abs(got.astype(int) - want.astype(int)).max(axis=-1)
        assert err.mean() < 6 and np.mean(err <= 12) >= 0.95, (err.mean(), np.mean(err <= 12))

    for i, (got, seen) in enumerate(zip(frames, inputs, strict=True)):
        if background == "none":
            close_to(got, seen)
        elif background == "#3366ff":
            close_to(got, np.array([255, 102, 51]))
        elif background == "image":  # covered, not stretched: 60x60 to 128x128, then cropped
            close_to(got, cv2.resize(picture, (128, 128))[28:100])
        elif background == "video":  # one video frame per output frame, looping
            close_to(got, np.array(video_colors[i % 4]))
        else:  # blur: the room's own colours, smoothed: not the input, not a flat colour
            board, board_in = got[50:68].astype(float), seen[50:68].astype(float)
            assert np.abs(board - board_in).mean() > 10, i
            assert board.std() < 0.5 * board_in.std(), (board.std(), board_in.std())
            assert np.abs(board.mean(axis=(0, 1)) - board_in.mean(axis=(0, 1))).max() < 10
            assert np.abs(np.median(got[10:20], axis=(0, 1)) - 90).max() <= 10  # plain wall


def test_verbose_prints_status(clip: Path, model_cache: Path) -> None:
    r = run("-i", str(clip), "-o", "null", "-v")
    assert r.returncode == 0
    assert "done: 12 frames in, 12 processed, 12 written" in r.stderr


BAD_INPUTS = {  # case: (arguments, words the message must hold, exit code: 2 usage, 1 failure)
    "missing input": (["-i", "{tmp}/nope.mp4", "-o", "{tmp}/o.mp4"], "does not exist", 2),
    "not a video": (["-i", "{tmp}/text.mp4", "-o", "{tmp}/o.mp4"], "not a video", 2),
    "zero frames": (["-i", "{tmp}/empty.mp4", "-o", "{tmp}/o.mp4"], "no video", 2),
    "missing camera": (["-i", "/dev/video77", "-o", "{tmp}/o.mp4"], "mattecam devices", 2),
    "missing background": (
        ["-i", "{clip}", "-o", "{tmp}/o.mp4", "-b", "{tmp}/bg.jpg"],
        "does not exist",
        2,
    ),
    "background not an image": (
        ["-i", "{clip}", "-o", "{tmp}/o.mp4", "-b", "{tmp}/text.png"],
        "not an image",
        2,
    ),
    "missing model": (
        ["-i", "{clip}", "-o", "{tmp}/o.mp4", "--model", "{tmp}/m.tflite"],
        "does not exist",
        2,
    ),
    "unknown model": (
        ["-i", "{clip}", "-o", "{tmp}/o.mp4", "--model", "foo"],
        "--model must be one of",
        2,
    ),
    "corrupt model": (
        ["-i", "{clip}", "-o", "{tmp}/o.mp4", "--model", "{tmp}/text.tflite"],
        "cannot load",
        2,
    ),
    "missing config": (
        ["-i", "{clip}", "-o", "null", "--config", "{tmp}/c.toml"],
        "does not exist",
        2,
    ),
    "output dir missing": (["-i", "{clip}", "-o", "{tmp}/no/such/dir/o.mp4"], "does not exist", 2),
    "output not writable": (["-i", "{clip}", "-o", "/proc/o.mp4"], "writable location", 1),
    "output type": (["-i", "{clip}", "-o", "{tmp}/o.txt"], "unknown output", 2),
    "no output": (["-i", "{clip}"], "no output", 2),
    "bad colour": (["-i", "{clip}", "-o", "null", "-b", "notacolour"], "neither a file", 2),
    "bad size": (["-i", "{clip}", "-o", "null", "--width", "3"], "--width", 2),
    "blur out of range": (["-i", "{clip}", "-o", "null", "--blur", "200"], "--blur", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error(
    case: str, tmp_path: Path, clip: Path, model_cache: Path
) -> None:
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "text.tflite").write_text("not a model")
    import av

    with av.open(str(tmp_path / "empty.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    before = set(tmp_path.iterdir())
    args, expected, code = BAD_INPUTS[case]
    r = run(*(a.format(tmp=tmp_path, clip=clip) for a in args))
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("mattecam: error:"), r.stderr
    assert expected in r.stderr
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_verbose_error_shows_traceback(tmp_path: Path) -> None:
    r = run("-i", str(tmp_path / "nope.mp4"), "-o", "null", "-v")
    assert r.returncode != 0
    assert "Traceback" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_finalises_the_file(
    tmp_path: Path, clip: Path, sig: signal.Signals, model_cache: Path
) -> None:
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen(
        [*MATTECAM, "-i", str(clip), "--loop", "-o", str(out), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until frames flow
        if "output:" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert f"{sig.name} received" in err
    frames = read_frames(out)
    assert len(frames) > 10
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_python_dash_m_and_entry_point_agree() -> None:
    exe = Path(sys.executable).with_name("mattecam")
    if not exe.exists():
        pytest.skip("entry point not installed in this environment")
    a = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert a.returncode == 0 and a.stdout.startswith("mattecam ")
    assert os.access(exe, os.X_OK)
