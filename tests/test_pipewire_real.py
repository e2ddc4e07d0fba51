"""The PipeWire camera (``-o pipewire``) on a real clip, read by real consumers: the
ground-truth-mask colour check through ``pipewiresrc`` and through ffmpeg under ``pw-v4l2``,
and on-demand timing (pause with nobody watching, frames soon after a consumer connects).

The picture: one frame of the hand-labelled ``tennis`` clip from ../shared/data, at its own
size (854x480), repeated as a still clip, so every frame read back is that frame composited
and its mask is the truth (frames from a live camera do not map 1:1 to clip frames). Where
the mask says background (a margin away from the person) the pixels must be the chosen
colour; where it says person (eroded) they must be the clip's.

Time bounds are margins: the design figure is 2 s, the bound :data:`BOUND_S` (6 s) leaves
room for a busy 2-core machine; the measured figures are printed (``-s``) and recorded in
docs/virtual-camera.md ("PipeWire camera").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from pwsession import PipeWireSession, pw_session, stop

__all__ = ["pw_session"]  # a fixture, used by name
pytestmark = pytest.mark.slow

MATTECAM = [sys.executable, "-m", "mattecam"]
NODE = "mattecamreal"
FRAME = 35  # the tennis frame shown: the player mid-swing, 4.6 % of the picture
STILL_FRAMES = 24  # the still clip: FRAME repeated for 1 s at 24 fps, looped
COLOUR_BGR = (0xFF, 0x66, 0x33)  # -b '#3366ff'
TOLERANCE = 40  # max channel difference that still counts as the background colour
#: Around the person, this many pixels (at 854x480) are neither background nor person:
#: the matte's edge. About the VM test's 3 px at 192x144, scaled to this size.
MARGIN = 8
#: Seconds: the issue's design figure is 2 s (pause with nobody watching, frames after a
#: consumer connects); this bound catches "never" and "many times slower", not a busy
#: machine (measured: docs/virtual-camera.md).
BOUND_S = 6.0
#: A frame read back counts as composited (no longer the placeholder) when at least this
#: share of the truth's background is the colour; every such frame is then judged strictly.
REAL = 0.5
PAUSING = "no one is watching the output: pausing"
RESUMING = "someone started watching the output: resuming"
PUBLISHED = f"PipeWire camera '{NODE}' ("


@dataclass
class Truth:
    frame: np.ndarray  # H x W x 3 BGR, as mattecam decodes the still clip
    background: np.ndarray  # H x W bool: surely background (MARGIN px from the person)
    person: np.ndarray  # H x W bool: surely person (the mask eroded by MARGIN // 2 px)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frame.shape[:2]
        return w, h


@dataclass
class Camera:
    session: PipeWireSession
    proc: subprocess.Popen[bytes]
    path: Path  # mattecam's log
    log: Log
    truth: Truth
    startup: dict[str, float] = field(default_factory=dict)


class Log:
    """The lines of a growing log file, each stamped with when it was first seen: a thread
    reads the file every 20 ms until :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._pos = 0
        self._lock = threading.Lock()  # guards lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                with self.path.open("rb") as f:
                    f.seek(self._pos)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            now = time.monotonic()
            self._pos += end
            new = [(now, s) for s in data[:end].decode(errors="replace").splitlines()]
            with self._lock:
                self.lines += new

    def wait(self, text: str, after: float, timeout: float) -> float | None:
        """When a line containing ``text`` was first seen at or after ``after``
        (monotonic), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                hit = next((t for t, line in self.lines if t >= after and text in line), None)
            if hit is not None or time.monotonic() > deadline:
                return hit
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _still_clip(src: Path, out: Path, k: int) -> np.ndarray:
    """Write frame ``k`` of ``src`` repeated (lossless H.264) to ``out``; return it as
    mattecam decodes it."""
    from mattecam.imaging.video import to_bgr

    with av.open(str(src)) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i == k:
                img = vf.to_ndarray(format="bgr24")
                break
        else:
            pytest.fail(f"{src} has no frame {k}")
    h, w = img.shape[:2]
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(24))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "qp": "0"}
        for i in range(STILL_FRAMES):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(out)) as c:
        decoded = [to_bgr(vf) for vf in c.decode(video=0)]
    assert len(decoded) == STILL_FRAMES
    assert max(np.abs(d.astype(int) - decoded[0]).max() for d in decoded) == 0
    return decoded[0]


@pytest.fixture(scope="module")
def camera(
    pw_session: PipeWireSession,
    shared_data: Path,
    model_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Camera]:
    """mattecam publishing the still tennis clip over ``#3366ff`` as ``NODE``, with nobody
    watching yet; ``startup`` holds when the node appeared and the pipeline paused."""
    src = shared_data / "videos" / "gt" / "tennis"
    if not (src / "tennis.mp4").is_file():
        pytest.skip(f"{src}/tennis.mp4 is absent")
    mask = cv2.imread(str(src / "masks" / f"{FRAME:05d}.png"), cv2.IMREAD_GRAYSCALE)
    assert mask is not None, f"mask {FRAME} missing"
    tmp = tmp_path_factory.mktemp("pwreal")
    frame = _still_clip(src / "tennis.mp4", tmp / "still.mp4", FRAME)
    person = (mask > 127).astype(np.uint8)
    assert person.shape == frame.shape[:2]
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MARGIN + 1, 2 * MARGIN + 1))
    core = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (MARGIN + 1, MARGIN + 1))
    truth = Truth(
        frame,
        ~cv2.dilate(person, disc).astype(bool),
        cv2.erode(person, core).astype(bool),
    )
    assert truth.person.sum() > 2000 and truth.background.mean() > 0.9

    path = pw_session.root / "mattecam-real.log"
    log = Log(path)
    t0 = time.monotonic()
    proc = pw_session.spawn(
        *MATTECAM, "-i", str(tmp / "still.mp4"), "--loop", "-o", f"pipewire:{NODE}",
        "-b", "#3366ff", "-v", name="mattecam-real",
    )  # fmt: skip
    cam = Camera(pw_session, proc, path, log, truth)
    try:
        t_open = log.wait(PUBLISHED, t0, 60)  # logged when the daemon accepted the node
        assert t_open is not None, _read(path)
        t_pause = log.wait(PAUSING, t0, 30)
        assert t_pause is not None, _read(path)
        assert pw_session.wait_node(NODE, timeout=10), pw_session.logs()
        cam.startup = {"published": t_open - t0, "paused": t_pause - t0}
        print(
            f"\nstart-up: node published after {t_open - t0:.2f} s, paused after "
            f"{t_pause - t0:.2f} s"
        )
        yield cam
        assert proc.poll() is None, _read(path)  # the consumers did not bring it down
    finally:
        stop(proc)
        log.close()
    text = _read(path)
    assert "Traceback" not in text, text[-3000:]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def is_colour(img: np.ndarray) -> np.ndarray:
    diff: np.ndarray = np.abs(img.astype(np.int16) - np.array(COLOUR_BGR, np.int16)).max(axis=2)
    return diff < TOLERANCE


def judge(img: np.ndarray, truth: Truth) -> dict[str, Any]:
    """How well one frame read back matches the truth."""
    colour = is_colour(img)
    diff = np.abs(img.astype(np.int16) - truth.frame.astype(np.int16)).max(axis=2)
    return {
        "background_is_colour": round(float(colour[truth.background].mean()), 4),
        "person_not_colour": round(float(1 - colour[truth.person].mean()), 4),
        "person_diff": float(np.median(diff[truth.person])),  # 0..255
    }


class Reader:
    """A consumer process writing raw BGR frames to its stdout; a thread collects each
    with the time it arrived and stops the process once ``enough`` composited frames came
    (or at :meth:`close`)."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        truth: Truth,
        *,
        stride: int,
        enough: int,
        stderr: Path,
    ) -> None:
        self.truth, self.stride, self.enough = truth, stride, enough
        self.frames: list[tuple[float, np.ndarray]] = []
        self.real: list[int] = []  # indices of composited frames
        self.done = threading.Event()
        self._err = stderr.open("wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=self._err, start_new_session=True
        )
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        w, h = self.truth.size
        size = self.stride * h
        out = self.proc.stdout
        assert out is not None
        try:
            while len(self.real) < self.enough:
                data = out.read(size)
                if len(data) < size:
                    return
                t = time.monotonic()
                rows = np.frombuffer(data, np.uint8).reshape(h, self.stride)
                img = rows[:, : w * 3].reshape(h, w, 3)
                if is_colour(img)[self.truth.background].mean() >= REAL:
                    self.real.append(len(self.frames))
                self.frames.append((t, img))
        finally:
            self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def close(self) -> None:
        stop(self.proc)
        self._thread.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()

    def first(self) -> float | None:
        """Seconds from the start to the first frame of any kind."""
        return self.frames[0][0] - self.t0 if self.frames else None

    def first_real(self) -> float | None:
        """Seconds from the start to the first composited frame."""
        return self.frames[self.real[0]][0] - self.t0 if self.real else None

    def judged(self) -> list[dict[str, Any]]:
        """Every frame from the first composited one on, judged."""
        if not self.real:
            return []
        return [judge(img, self.truth) for _, img in self.frames[self.real[0] :]]


def pipewiresrc(cam: Camera, enough: int, name: str) -> Reader:
    w, h = cam.truth.size
    # YUY2, not the default I420: GStreamer 1.22 lays out I420 and NV12 with each plane's
    # rows padded to 4 bytes, the sink (as libwebrtc and pw-v4l2 expect) sends them packed,
    # and at 854 wide pipewiresrc + videoconvert then give black frames. A YUY2 row
    # (2 * 854 bytes) needs no padding.
    cmd = [
        "gst-launch-1.0", "-q", "pipewiresrc", f"target-object={NODE}", "!",
        "video/x-raw,format=YUY2", "!", "videoconvert", "!",
        f"video/x-raw,format=BGR,width={w},height={h}", "!", "fdsink", "fd=1",
    ]  # fmt: skip
    # GStreamer pads each BGR row to a multiple of 4 bytes (854 * 3 = 2562 -> 2564).
    stride = (w * 3 + 3) // 4 * 4
    log = cam.session.root / f"{name}.log"
    return Reader(cmd, cam.session.env, cam.truth, stride=stride, enough=enough, stderr=log)


def check_frames(reader: Reader, what: str, min_frames: int) -> None:
    """Every composited frame shows the colour on the truth's background and the clip's
    pixels on the person; at least ``min_frames`` of them."""
    stats = reader.judged()
    assert len(stats) >= min_frames, (
        f"{what}: {len(stats)} composited of {len(reader.frames)} frames, want {min_frames}"
    )
    worst = {
        "background_is_colour": min(s["background_is_colour"] for s in stats),
        "person_not_colour": min(s["person_not_colour"] for s in stats),
        "person_diff": max(s["person_diff"] for s in stats),
    }
    placeholders = reader.real[0] if reader.real else len(reader.frames)
    print(
        f"\n{what}: {len(reader.frames)} frames, {placeholders} placeholder(s) first, "
        f"{len(stats)} composited judged; worst {worst}"
    )
    for s in stats:
        assert s["background_is_colour"] >= 0.97, f"{what}: background not the colour: {s}"
        assert s["person_not_colour"] >= 0.9, f"{what}: person replaced: {s}"
        assert s["person_diff"] <= 20, f"{what}: person pixels differ from the clip: {s}"


def test_pipewiresrc_sees_the_person_over_the_colour(camera: Camera) -> None:
    reader = pipewiresrc(camera, enough=24, name="pipewiresrc-gt")
    try:
        assert reader.wait(30), (len(reader.frames), camera.session.logs())
    finally:
        reader.close()
    check_frames(reader, "pipewiresrc (YUY2 -> BGR)", 24)


def test_ffmpeg_through_pw_v4l2(camera: Camera) -> None:
    """``pw-v4l2`` maps /dev/video0 (absent here) to the first PipeWire camera: ours."""
    pw_v4l2 = shutil.which("pw-v4l2")
    if pw_v4l2 is None:
        pytest.skip("pw-v4l2 is not installed (apt install pipewire-v4l2)")
    if Path("/dev/video0").exists():
        pytest.skip("/dev/video0 exists: pw-v4l2 would not map it to the PipeWire camera")
    w, h = camera.truth.size
    cmd = [
        pw_v4l2, "ffmpeg", "-nostdin", "-hide_banner", "-f", "v4l2", "-i", "/dev/video0",
        "-frames:v", "200", "-f", "rawvideo", "-pix_fmt", "bgr24", "-",
    ]  # fmt: skip
    log = camera.session.root / "ffmpeg-pw-v4l2.log"
    reader = Reader(cmd, camera.session.env, camera.truth, stride=w * 3, enough=10, stderr=log)
    try:
        assert reader.wait(30), (len(reader.frames), _read(log)[-2000:])
    finally:
        reader.close()
    text = _read(log)
    assert f"{w}x{h}" in text, text[-2000:]  # ffmpeg's input stream: the camera's size
    check_frames(reader, "ffmpeg via pw-v4l2 (bgr24)", 10)


def test_on_demand_timing(camera: Camera) -> None:
    """With nobody watching the pipeline pauses; a consumer gets composited frames soon
    after it connects; once it leaves the pipeline pauses again."""
    log, path = camera.log, camera.path
    rows = []
    for cycle in range(3):
        reader = pipewiresrc(camera, enough=5, name=f"pipewiresrc-cycle{cycle}")
        try:
            assert reader.wait(30), (len(reader.frames), camera.session.logs())
        finally:
            t_leave = time.monotonic()
            reader.close()
        resumed = log.wait(RESUMING, reader.t0, 1)
        assert resumed is not None, _read(path)[-2000:]
        first_real = reader.first_real()
        assert first_real is not None, _read(path)[-2000:]
        t_pause = log.wait(PAUSING, t_leave, 15)
        assert t_pause is not None, _read(path)[-2000:]
        rows.append(
            {
                "first_frame": round(reader.first() or 0, 2),
                "resumed": round(resumed - reader.t0, 2),
                "first_composited": round(first_real, 2),
                "paused_after_leaving": round(t_pause - t_leave, 2),
            }
        )
    start = camera.startup
    idle = start["paused"] - start["published"]
    print(
        f"\non demand: start-up {start}, paused {idle:.2f} s after the node was published; "
        f"per consumer (s from its start): {rows}"
    )
    assert idle <= BOUND_S, start
    for row in rows:
        assert row["first_composited"] <= BOUND_S, rows
        assert row["paused_after_leaving"] <= BOUND_S, rows
