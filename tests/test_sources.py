"""Video files and cameras as sources."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import write_clip
from mattecam.errors import InputNotFoundError, SourceError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.imaging.yuv import I420
from mattecam.sources import CameraSource, FileSource, camera_path, make_source
from mattecam.sources.base import even_size, fill_size


def bgr(frame: Frame) -> np.ndarray:
    """A source's frame (I420) as BGR, to check its pixels."""
    assert isinstance(frame.image, I420)
    return frame.image.to_bgr()


def read_all(src: FileSource, limit: int = 1000) -> list[Frame]:
    frames = []
    while len(frames) < limit and (f := src.read()) is not None:
        frames.append(f)
    return frames


def test_file_source_reads_every_frame_in_order(clip: Path) -> None:
    with FileSource(clip) as src:
        assert src.size == (160, 96)
        assert src.fps == pytest.approx(24)
        frames = read_all(src)
    assert [f.seq for f in frames] == list(range(12))
    marks = [int(bgr(f)[0, 0, 0]) for f in frames]
    assert all(abs(m - i * 40 % 256) <= 6 for i, m in enumerate(marks)), marks
    assert frames[3].pts == pytest.approx(3 / 24)
    assert all(isinstance(f.image, I420) and not f.image.full_range for f in frames)
    assert all(f.size == (160, 96) for f in frames)
    assert all(f.timings["decode"] >= 0 for f in frames)
    t = [f.t_capture for f in frames]
    assert t == sorted(t)


def test_file_source_scales_to_requested_size(clip: Path) -> None:
    with FileSource(clip, size=(64, 64)) as src:
        f = src.read()
    assert f is not None and isinstance(f.image, I420) and f.size == (64, 64)
    with FileSource(clip, size=(80, 0)) as src:
        assert src.size == (80, 48)  # height follows the input's aspect


def test_file_source_loops(clip: Path) -> None:
    with FileSource(clip, loop=True) as src:
        frames = read_all(src, limit=30)
    assert len(frames) == 30
    assert [f.seq for f in frames] == list(range(30))
    pts = [f.pts or 0.0 for f in frames]
    assert pts == sorted(pts)  # media time keeps increasing across the loop
    assert bgr(frames[12])[0, 0, 0] < 20  # frame 0 again


def test_realtime_file_source_is_paced(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=10, fps=50)
    with FileSource(clip, realtime=True) as src:
        t0 = time.monotonic()
        frames = read_all(src)
        elapsed = time.monotonic() - t0
    assert len(frames) == 10
    assert elapsed >= 9 / 50 * 0.9  # 10 frames at 50 fps span 0.18 s


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        FileSource(tmp_path / "nope.mp4").open()


def test_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="not a video"):
        FileSource(bad).open()


def test_video_with_zero_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()  # a valid header, then no frame at all
    assert empty.stat().st_size > 0
    with pytest.raises(UnsupportedFormatError, match="no video"):
        FileSource(empty).open()


def test_audio_only_file_is_rejected(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        c.start_encoding()
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
    with pytest.raises(UnsupportedFormatError, match="no video stream"):
        FileSource(wav).open()


def test_camera_path_parsing() -> None:
    assert camera_path("0") == Path("/dev/video0")
    assert camera_path(3) == Path("/dev/video3")
    assert camera_path("/dev/video12") == Path("/dev/video12")
    assert camera_path("clip.mp4") is None
    assert camera_path("/dev/sda") is None
    assert isinstance(make_source("2"), CameraSource)
    assert isinstance(make_source("x.mp4"), FileSource)


def test_missing_camera_names_the_fix() -> None:
    with pytest.raises(InputNotFoundError) as e:
        CameraSource(Path("/dev/video99")).open()
    assert "mattecam devices" in str(e.value)
    assert "video group" in str(e.value)


def test_not_a_camera(tmp_path: Path) -> None:
    # /dev/null exists and is readable, but is no V4L2 device.
    with pytest.raises(SourceError):
        CameraSource(Path("/dev/null")).open()


def test_fill_size() -> None:
    assert fill_size(None, (640, 480)) == (640, 480)
    assert fill_size((320, 0), (640, 480)) == (320, 240)
    assert fill_size((0, 720), (1920, 1080)) == (1280, 720)
    assert fill_size((100, 50), (640, 480)) == (100, 50)
    # Always even: I420 frames need it (an odd side loses its last column or row).
    assert fill_size(None, (97, 65)) == (96, 64)
    assert fill_size((101, 51), (640, 480)) == (100, 50)
    assert fill_size((0, 0), (97, 65)) == (96, 64)
    assert fill_size((81, 0), (640, 480)) == (80, 60)
    assert fill_size((0, 1), (640, 480)) == (2, 2)
    assert even_size((1, 3)) == (2, 2)


def test_write_clip_roundtrip(tmp_path: Path) -> None:
    """The synthetic clip helper itself produces what the tests above assume: n frames in
    order, frame i numbered i * 40 mod 256 in its top-left 8x8 block, its square at x = 4i."""
    n = 8  # enough for the number to wrap past 255, as it does in the 12-frame clip
    c = write_clip(tmp_path / "x.mp4", n=n)
    with av.open(str(c)) as f:
        decoded = [(vf.pts, vf.to_ndarray(format="bgr24")) for vf in f.decode(video=0)]
    assert len(decoded) == n
    pts = [p for p, _ in decoded]
    assert pts == sorted(set(pts)), pts
    for i, (_, img) in enumerate(decoded):
        # Lossless H.264 (qp 0) of yuv420p: only the BGR <-> YUV rounding is lost.
        block = img[:8, :8].astype(int)
        assert np.abs(block - i * 40 % 256).max() <= 4, (i, block.min(), block.max())
        assert np.abs(img[8:16, :16].astype(int) - 90).max() <= 4, i  # the grey wall
        assert np.abs(img[:8, 8:16].astype(int) - 90).max() <= 4, i
        red = np.flatnonzero(img[96 // 3 + 10, :, 2] > 180)  # the square: BGR (40, 200, 230)
        assert red.tolist() == list(range(4 * i, 4 * i + 20)), (i, red)
