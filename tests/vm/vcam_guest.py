"""Runs inside the test VM: drives mattecam against real v4l2loopback devices and records
what independent consumers (ffmpeg, OpenCV, Chromium) see.

Started by ``test_virtual_camera.py`` as ``python tests/vm/vcam_guest.py SCENARIO CONFIG``;
it writes ``result.json``, raw frames and logs into the config's ``out`` directory (a
shared directory the host reads). It only measures and records: every judgement is made by
the host-side tests, so a failing check still leaves all the evidence behind.

The V4L2 calls here are written out independently of ``mattecam.v4l2`` on purpose: the
observer must not share the code it observes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

T0 = time.monotonic()
OUT = Path()
RESULT: dict[str, Any] = {}

# --- V4L2, by hand (x86_64 layouts) ------------------------------------------------------
VIDIOC_QUERYCAP = 0x80685600
VIDIOC_S_FMT = 0xC0D05605
VIDIOC_STREAMON = 0x40045612
VIDIOC_SUBSCRIBE_EVENT = 0x4020565A
VIDIOC_DQEVENT = 0x80885659
CAP_CAPTURE, CAP_OUTPUT, CAP_DEVICE_CAPS = 0x1, 0x2, 0x80000000
EVENT_CLIENT_USAGE = 0x08000000 + 0x08E00000 + 1
BYTES_PER_PIXEL = {"yuyv": 2.0, "uyvy": 2.0, "i420": 1.5, "nv12": 1.5, "rgb24": 3.0}
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner"]


def now() -> float:
    """Seconds since this driver started (CLOCK_MONOTONIC, shared by everything here)."""
    return time.monotonic() - T0


def log(*parts: object) -> None:
    print(f"[{now():7.2f}]", *parts, flush=True)


def device_caps(dev: str) -> int:
    """The node's device caps (0 when it cannot be opened)."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        buf = bytearray(104)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
        caps, dcaps = struct.unpack_from("=II", buf, 84)
        return int(dcaps if caps & CAP_DEVICE_CAPS else caps)
    finally:
        os.close(fd)


def wait_for(pred: Any, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``pred()`` is true, or None after ``timeout``."""
    t = now()
    while now() - t < timeout:
        if pred():
            return now() - t
        time.sleep(step)
    return None


def is_capture(dev: str) -> bool:
    return bool(device_caps(dev) & CAP_CAPTURE)


def is_idle_output(dev: str) -> bool:
    """exclusive_caps=1 and nobody writing: the node offers output only."""
    c = device_caps(dev)
    return bool(c & CAP_OUTPUT) and not c & CAP_CAPTURE


def holds(pid: int, dev: str) -> bool:
    """Whether process ``pid`` has ``dev`` open (what ``fuser`` reports)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if str(fd.readlink()) == dev:
                return True
    return False


class UsageWatcher:
    """Subscribes to v4l2loopback's client-usage event (0.13+) on its own file handle."""

    def __init__(self, dev: str) -> None:
        self.fd = os.open(dev, os.O_RDWR | os.O_NONBLOCK)
        self.events: list[tuple[float, int]] = []
        try:
            fcntl.ioctl(
                self.fd, VIDIOC_SUBSCRIBE_EVENT, bytearray(struct.pack("=IIII16x",
                                                                       EVENT_CLIENT_USAGE,
                                                                       0, 1, 0))
            )  # fmt: skip
            self.ok = True
        except OSError:
            self.ok = False

    def poll(self) -> None:
        while self.ok and select.select([], [], [self.fd], 0)[2]:
            buf = bytearray(136)
            try:
                fcntl.ioctl(self.fd, VIDIOC_DQEVENT, buf)
            except OSError:
                return
            self.events.append((now(), struct.unpack_from("=I", buf, 8)[0]))

    def first(self, count: int, after: float) -> float | None:
        self.poll()
        return next((t for t, c in self.events if c == count and t >= after), None)

    def close(self) -> None:
        os.close(self.fd)


# --- producers ---------------------------------------------------------------------------


class Producer:
    """Writes YUYV frames into a loopback device at ``fps`` (S_FMT, STREAMON, write)."""

    def __init__(self, dev: str, w: int, h: int, fps: float, frame: Any) -> None:
        self.dev, self.w, self.h, self.fps, self.frame = dev, w, h, fps, frame
        self.stop_event = threading.Event()
        self.written = 0
        self.error = ""
        fd = os.open(dev, os.O_RDWR)
        buf = bytearray(208)
        struct.pack_into("=I", buf, 0, 2)  # VIDEO_OUTPUT
        struct.pack_into("=IIIIIII", buf, 8, w, h, fourcc("YUYV"), 1, w * 2, w * h * 2, 1)
        fcntl.ioctl(fd, VIDIOC_S_FMT, buf)
        with contextlib.suppress(OSError):  # needed by 0.12.x, EINVAL on 0.14+
            fcntl.ioctl(fd, VIDIOC_STREAMON, struct.pack("=I", 2))
        self.fd = fd
        self.thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        period = 1.0 / self.fps
        t = time.monotonic()
        try:
            while not self.stop_event.is_set():
                os.write(self.fd, self.frame(self.written))
                self.written += 1
                t += period
                self.stop_event.wait(max(0.0, t - time.monotonic()))
        except OSError as e:
            self.error = str(e)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        os.close(self.fd)


def fourcc(s: str) -> int:
    return int.from_bytes(s.encode(), "little")


BITS = 32
BLOCK = 8


def stamp_frame(w: int, h: int) -> Any:
    """A frame function for :class:`Producer`: grey YUYV with the producer's monotonic
    milliseconds (and their complement, as a check) in 8x8 black/white blocks."""
    base = np.full((h, w, 2), 128, np.uint8)
    base[..., 0] = 110

    def frame(_n: int) -> bytes:
        value = int(time.monotonic() * 1000) & 0xFFFFFFFF
        bits = [(value >> i) & 1 for i in range(BITS)] + [
            1 - ((value >> i) & 1) for i in range(BITS)
        ]
        img = base.copy()
        per_row = w // BLOCK
        for i, b in enumerate(bits):
            y, x = divmod(i, per_row)
            img[y * BLOCK : (y + 1) * BLOCK, x * BLOCK : (x + 1) * BLOCK, 0] = 235 if b else 16
        return img.tobytes()

    return frame


def read_stamp(luma: Any) -> int | None:
    """The value :func:`stamp_frame` wrote, from the Y plane; None if unreadable."""
    w = luma.shape[1]
    per_row = w // BLOCK
    bits = []
    for i in range(2 * BITS):
        y, x = divmod(i, per_row)
        c = luma[y * BLOCK + 2 : y * BLOCK + 6, x * BLOCK + 2 : x * BLOCK + 6]
        bits.append(int(c.mean() > 125))
    value = sum(b << i for i, b in enumerate(bits[:BITS]))
    if any(a == b for a, b in zip(bits[:BITS], bits[BITS:], strict=True)):
        return None
    return value


# --- consumers ---------------------------------------------------------------------------


def to_bgr(raw: bytes, fmt: str, w: int, h: int) -> Any:
    a = np.frombuffer(raw, np.uint8)
    if fmt == "yuyv":
        return cv2.cvtColor(a.reshape(h, w, 2), cv2.COLOR_YUV2BGR_YUYV)
    if fmt == "uyvy":
        return cv2.cvtColor(a.reshape(h, w, 2), cv2.COLOR_YUV2BGR_UYVY)
    if fmt == "i420":
        return cv2.cvtColor(a.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)
    if fmt == "nv12":
        return cv2.cvtColor(a.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_NV12)
    return a.reshape(h, w, 3)[..., ::-1]


def colour_fraction(bgr: Any, colour: list[int]) -> float:
    d = np.abs(bgr.astype(np.int16) - np.array(colour, np.int16)).max(axis=2)
    return float((d < 40).mean())


class FfmpegReader:
    """ffmpeg reads the device (``-c:v copy``, raw) into a pipe; each frame is timestamped
    when it arrives here."""

    def __init__(self, dev: str, fmt: str, w: int, h: int, name: str) -> None:
        self.fmt, self.w, self.h, self.name = fmt, w, h, name
        self.size = int(w * h * BYTES_PER_PIXEL[fmt])
        self.frames: list[tuple[float, bytes]] = []
        self._scans: dict[tuple[int, ...], tuple[int, list[int], bytes]] = {}
        self.stderr_path = OUT / f"{name}.ffmpeg.log"
        self.t_start = now()
        cmd = [*FFMPEG, "-loglevel", "info", "-f", "v4l2", "-i", dev, "-fps_mode", "passthrough",
               "-c:v", "copy", "-f", "rawvideo", "-flush_packets", "1", "pipe:1"]  # fmt: skip
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = self.proc.stdout.read(self.size)
            if len(data) < self.size:
                return
            self.frames.append((now(), data))

    def collect(self, colour: list[int], want: int, timeout: float) -> list[int]:
        """Wait for ``want`` distinct frames showing ``colour`` (processed frames, not the
        placeholder); returns their indices in :attr:`frames`."""
        t_end = now() + timeout
        while now() < t_end and self.proc.poll() is None:
            if len(self.real(colour)) >= want:
                break
            time.sleep(0.1)
        return self.real(colour)

    def real(self, colour: list[int]) -> list[int]:
        """Indices of the frames that differ from the one before and show ``colour``.

        Incremental (each frame is looked at once per colour): callers poll this every
        50-100 ms, and re-converting every frame each time would take the guest's only CPU
        from mattecam as the list grows, the more so the slower the host.
        """
        scanned, out, prev = self._scans.get(tuple(colour), (0, [], b""))
        new = self.frames[scanned:]
        for i, (_, data) in enumerate(new, scanned):
            if data != prev and colour_fraction(to_bgr(data, self.fmt, self.w, self.h),
                                                colour) > 0.3:  # fmt: skip
                out.append(i)
            prev = data
        self._scans[tuple(colour)] = (scanned + len(new), out, prev)
        return list(out)

    def crashed(self) -> bool:
        """ffmpeg died by a signal of its own (SIGSEGV, SIGABRT, ...), not by :meth:`stop`."""
        rc = self.proc.poll()
        return rc is not None and rc < 0

    def stop(self) -> dict[str, Any]:
        self.t_stop = now()
        crashed = self.crashed()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.thread.join(5)
        return {"rc": rc, "crashed": crashed, "frames": len(self.frames), "t_stop": self.t_stop,
                "stderr": self.stderr_path.read_text()}  # fmt: skip

    def save(self, indices: list[int], extra: list[int] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        """Write the chosen frames' raw bytes to ``<name>.raw`` (in order)."""
        keep = sorted(set(indices) | set(extra))
        with (OUT / f"{self.name}.raw").open("wb") as f:
            for i in keep:
                f.write(self.frames[i][1])
        return {
            "file": f"{self.name}.raw",
            "indices": keep,
            "times": [self.frames[i][0] for i in keep],
            "frame_bytes": self.size,
            "all_times": [t for t, _ in self.frames],
        }


def read_processed(
    dev: str, fmt: str, size: tuple[int, int], name: str, *, colour: list[int], want: int,
    timeout: float, writer: subprocess.Popen,
) -> dict[str, Any]:  # fmt: skip
    """An ffmpeg reader collects ``want`` processed frames from ``dev``.

    ffmpeg's v4l2 input itself sometimes dies by a signal in the TCG guest when the host is
    starved (it is not mattecam's process, and the device keeps working for the next
    reader). Such a crash, while ``writer`` (mattecam) is still running, is recorded under
    ``"retried"`` and a second reader tries once more; any other ending of the reader, or a
    second crash, is recorded as it is and left to the host-side checks.
    """
    w, h = size
    rd = FfmpegReader(dev, fmt, w, h, name)
    idx = rd.collect(colour, want, timeout)
    info = rd.stop()
    if len(idx) < want and info["crashed"] and writer.poll() is None:
        log(f"{name}: ffmpeg died by signal {-info['rc']} after {info['frames']} frames; "
            "reading once more")  # fmt: skip
        first = {k: info[k] for k in ("rc", "frames", "stderr")}
        rd = FfmpegReader(dev, fmt, w, h, f"{name}-retry")
        idx = rd.collect(colour, want, timeout)
        info = rd.stop()
        info["retried"] = first
    info.update(rd.save(idx[:want]))
    return info


def opencv_read(dev: str, colour: list[int], want: int, timeout: float, name: str) -> dict:
    """cv2.VideoCapture(CAP_V4L2) reads until ``want`` distinct frames show ``colour``."""
    t0 = now()
    cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
    res: dict[str, Any] = {"opened": bool(cap.isOpened()), "reads": 0, "failed_reads": 0}
    if not cap.isOpened():
        return res
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    res["fourcc"] = code.to_bytes(4, "little").decode("latin-1")
    res["width"] = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    res["height"] = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    real: list[Any] = []
    prev = None
    while now() - t0 < timeout and len(real) < want:
        ok, img = cap.read()
        if not ok or img is None:
            res["failed_reads"] += 1
            if res["failed_reads"] > 3:
                break
            continue
        res["reads"] += 1
        if prev is not None and np.array_equal(img, prev):
            continue
        prev = img
        if colour_fraction(img, colour) > 0.3:
            real.append(img)
    cap.release()
    res["shape"] = list(real[0].shape) if real else None
    if real:
        np.save(OUT / f"{name}.npy", np.stack(real))
        res["file"] = f"{name}.npy"
    res["count"] = len(real)
    return res


# --- mattecam ------------------------------------------------------------------------------


class Mattecam:
    """A ``mattecam`` process with its output in ``<name>.log``."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.log_path = OUT / f"{name}.log"
        self.t_start = now()
        with self.log_path.open("w") as f:
            self.proc = subprocess.Popen(["mattecam", *args], stdout=f, stderr=subprocess.STDOUT)
        log(f"{name}: started mattecam {' '.join(args)} (pid {self.proc.pid})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: str) -> dict[str, Any]:
        """Send ``sig`` (SIGTERM, SIGINT, SIGKILL); wait up to 30 s."""
        t = now()
        if self.proc.poll() is None:
            self.proc.send_signal(getattr(signal, sig))
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            return {"signal": sig, "rc": rc, "seconds": now() - t, "hung": True}
        log(f"{self.name}: {sig} -> exit {rc} after {now() - t:.2f} s")
        return {"signal": sig, "rc": rc, "seconds": now() - t, "hung": False}

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for it to exit by itself (an error run)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        return {"rc": rc, "seconds": now() - self.t_start, "output": self.text()}

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


def processed_rates(log_text: str) -> list[float]:
    """The ``processed N fps`` figures of mattecam's status lines (``-v``, every 2 s) while
    frames came in."""
    found = re.findall(r"in ([\d.]+) fps, processed ([\d.]+) fps", log_text)
    return [float(p) for i, p in found if float(i) > 0]


def sh(cmd: list[str], timeout: float = 120) -> dict[str, Any]:
    """Run a command to its end: exit status, output and seconds."""
    t = now()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    log(f"{cmd[0]} {' '.join(cmd[1:])[:120]} -> exit {p.returncode} after {now() - t:.1f} s")
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "seconds": now() - t}


def run_cli(args: list[str]) -> dict[str, Any]:
    return sh(["mattecam", *args])


def mattecam_args(cfg: dict, *, source: str, fmt: str = "yuyv", bg: str | None = None) -> list:
    w, h = cfg["size"]
    args = ["-i", source, "-o", "/dev/video10", "--output-format", fmt, "--fps", str(cfg["fps"]),
            "--model", "landscape", "-b", bg or cfg["colour_arg"], "-v"]  # fmt: skip
    if not source.startswith("/dev/"):
        args += ["--loop", "--width", str(w), "--height", str(h)]
    return args


# --- scenarios ---------------------------------------------------------------------------


def live_config_edit(cfg: dict, run: dict, name: str, config: Path) -> dict[str, Any]:
    """Read frames of the first colour, keep reading for ``baseline_s`` (how steadily frames
    come in this guest right now), rewrite the config file to the second colour, read
    frames of that; every frame's arrival time is kept to look for gaps."""
    w, h = cfg["size"]
    rd = FfmpegReader("/dev/video10", run["fmt"], w, h, name)
    before = rd.collect(cfg["colour_bgr"], run["want"], cfg["collect_s"])[: run["want"]]
    t_baseline = now()
    time.sleep(cfg["baseline_s"])
    t_change = now()
    config.write_text(f'background = "{cfg["colour2_arg"]}"\n')
    log(f"{name}: config file now says {cfg['colour2_arg']}")
    seen = rd.collect(cfg["colour2_bgr"], run["want"], cfg["collect_s"])
    after = [i for i in seen if rd.frames[i][0] > t_change]
    t_end = now()
    info: dict[str, Any] = rd.stop()
    info.update(rd.save(before, after[: run["want"]]))
    first = [rd.frames[i][0] for i in after]
    info.update(n_before=len(before), t_baseline=t_baseline, t_change=t_change, t_end=t_end,
                after_change_s=(first[0] - t_change) if first else None)  # fmt: skip
    return info


def scenario_formats(cfg: dict) -> None:
    """Item 1 and 3: a file into the loopback in several formats, read back by ffmpeg and
    OpenCV; each run is stopped by another signal and the next one must work."""
    w, h = cfg["size"]
    colour = cfg["colour_bgr"]
    RESULT["devices"] = run_cli(["devices"])
    runs = []
    RESULT["runs"] = runs
    for i, run in enumerate(cfg["runs"]):
        r: dict[str, Any] = {"fmt": run["fmt"], "always_on": run["always_on"]}
        runs.append(r)
        r["idle_before"] = is_idle_output("/dev/video10")
        args = mattecam_args(cfg, source=cfg["clip"], fmt=run["fmt"])
        config = OUT / f"run{i}.toml"
        if run.get("config"):  # the background comes from a file that is edited later
            b = args.index("-b")
            del args[b : b + 2]
            config.write_text(f'background = "{cfg["colour_arg"]}"\n')
            args += ["--config", str(config)]
        if run["always_on"]:
            args.append("--always-on")
        if run.get("output"):
            args[args.index("-o") + 1] = run["output"]
        m = Mattecam(f"run{i}", args)
        r["capture_after_s"] = wait_for(lambda: is_capture("/dev/video10"), 90)
        if r["capture_after_s"] is None:
            r["stop"] = m.stop("SIGKILL")
            r["log"] = m.text()
            continue
        for reader in run["readers"]:
            name = f"run{i}-{reader}"
            if reader == "ffmpeg":
                r["ffmpeg"] = read_processed("/dev/video10", run["fmt"], (w, h), name,
                                             colour=colour, want=run["want"],
                                             timeout=cfg["collect_s"], writer=m.proc)  # fmt: skip
            elif reader == "live":
                r["live"] = live_config_edit(cfg, run, name, config)
            elif reader == "opencv":
                r["opencv"] = opencv_read(
                    "/dev/video10", colour, run["want"], cfg["collect_s"], name
                )
            else:
                RESULT["devices_busy"] = run_cli(["devices"])
        r["stop"] = m.stop(run["stop"])
        r["idle_after_stop_s"] = wait_for(lambda: is_idle_output("/dev/video10"), 10)
        r["log"] = m.text()


def scenario_webcam(cfg: dict) -> None:
    """Items 2, 5 and 6: a fake webcam (a second loopback) -> mattecam -> /dev/video10."""
    w, h = cfg["size"]
    colour = cfg["colour_bgr"]
    cam, vcam = "/dev/video11", "/dev/video10"

    # 6a. pass-through latency: a producer stamps its clock into the pixels, -b none keeps
    # them; producer and reader are this process, so they share CLOCK_MONOTONIC.
    lat: dict[str, Any] = {}
    RESULT["latency"] = lat
    prod = Producer(cam, w, h, cfg["fps"], stamp_frame(w, h))
    lat["camera_ready_s"] = wait_for(lambda: is_capture(cam), 20)
    m = Mattecam("latency", mattecam_args(cfg, source=cam, bg="none"))
    lat["vcam_ready_s"] = wait_for(lambda: is_capture(vcam), 90)
    rd = FfmpegReader(vcam, "yuyv", w, h, "latency")
    samples: dict[int, float] = {}
    scanned = 0
    retried = None
    t_end = now() + cfg["latency_max_s"]
    while now() < t_end and len(samples) < cfg["latency_samples"]:
        time.sleep(0.2)
        frames = rd.frames[scanned:]
        scanned += len(frames)
        for t, data in frames:
            value = read_stamp(np.frombuffer(data, np.uint8)[0::2].reshape(h, w))
            if value is not None and value not in samples:
                samples[value] = t
        if rd.crashed() and retried is None and m.proc.poll() is None:
            retried = rd.stop()  # see read_processed; the samples so far stay
            log(f"latency: ffmpeg died by signal {-retried['rc']}; reading once more")
            rd, scanned = FfmpegReader(vcam, "yuyv", w, h, "latency-retry"), 0
    lat["reader"] = rd.stop()
    if retried is not None:
        lat["reader"]["retried"] = {k: retried[k] for k in ("rc", "frames", "stderr")}
    lat["frames_read"] = len(rd.frames)
    lat["unreadable"] = sum(
        read_stamp(np.frombuffer(d, np.uint8)[0::2].reshape(h, w)) is None for _, d in rd.frames
    )
    base = (T0 * 1000) % (1 << 32)
    lat["latency_ms"] = [((t * 1000 + base) - v) % (1 << 32) for v, t in sorted(samples.items())]
    lat["stop"] = m.stop("SIGTERM")
    lat["log"] = m.text()
    prod.close()
    lat["producer_written"] = prod.written
    lat["producer_error"] = prod.error

    # 6b. latency with segmentation: the fake webcam shows clip frame A, then B, switching
    # every `switch_every` s; the host tells A from B in what the reader got, and the first
    # frame showing the new picture after a switch gives one sample.
    seg: dict[str, Any] = {}
    RESULT["latency_segmented"] = seg
    ab = Path(cfg["ab_frames"]).read_bytes()
    n = w * h * 2
    switches: list[tuple[float, int]] = []
    plan: dict[str, int] = {}  # "per": frames between switches, once calibrated; "k0"

    def switching(k: int) -> bytes:
        per = plan.get("per")
        if per is None:
            return ab[:n]  # A, until the switching starts
        i = k - plan.setdefault("k0", k)
        which = (i // per) % 2
        if i % per == 0:
            switches.append((now(), which))
        return ab[which * n : (which + 1) * n]

    prod = Producer(cam, w, h, cfg["fps"], switching)
    m = Mattecam("segmented", mattecam_args(cfg, source=cam))
    seg["vcam_ready_s"] = wait_for(lambda: is_capture(vcam), 90)
    rd = FfmpegReader(vcam, "yuyv", w, h, "segmented")
    # Calibration: how fast segmentation runs in this guest right now, from mattecam's own
    # status line (every 2 s with -v). A sample takes about two processing times (the frame
    # in progress, then the new one) plus the devices' share, up to ~3 in all; a switching
    # period of five keeps each sample inside its period when the guest is starved: a slow
    # host makes the run longer, it does not turn samples into misses.
    seg["first_frame_s"] = wait_for(
        lambda: any(colour_fraction(to_bgr(d, "yuyv", w, h), colour) > 0.3
                    for _, d in rd.frames[-2:]),
        cfg["collect_s"], step=0.25,
    )  # fmt: skip
    n0 = len(processed_rates(m.text()))
    wait_for(lambda: len(processed_rates(m.text())) >= n0 + 2, 30, step=0.25)
    rates = processed_rates(m.text())[n0:]
    fps = float(np.mean(rates)) if rates else 0.0
    # none processed in those windows: slower than one per window (2 s)
    frame_s = 1 / fps if fps > 0 else (2.0 * len(rates) if rates else 1 / cfg["fps"])
    per = max(1, round(max(cfg["switch_every"], 5 * frame_s) * cfg["fps"]))
    seconds = min(cfg["switches"] * per / cfg["fps"], cfg["segmented_max_s"])
    seg["calibration"] = {"processed_fps": rates, "frame_s": frame_s,
                          "switch_every_s": per / cfg["fps"], "seconds": seconds}  # fmt: skip
    log(f"segmented: {seg['calibration']}")
    plan["per"] = per
    wait_for(rd.crashed, seconds, step=0.25)
    retried = None
    if rd.crashed() and m.proc.poll() is None:  # see read_processed: one more reader
        retried = rd.stop()
        log(f"segmented: ffmpeg died by signal {-retried['rc']}; reading once more")
        rd = FfmpegReader(vcam, "yuyv", w, h, "segmented-retry")
        wait_for(rd.crashed, seconds, step=0.25)
    seg["reader"] = rd.stop()
    if retried is not None:
        seg["reader"]["retried"] = {k: retried[k] for k in ("rc", "frames", "stderr")}
    distinct = [
        i for i in range(len(rd.frames)) if i == 0 or rd.frames[i][1] != rd.frames[i - 1][1]
    ]
    seg["reader"].update(rd.save(distinct))
    seg["switches"] = switches
    seg["stop"] = m.stop("SIGTERM")
    seg["log"] = m.text()
    prod.close()
    seg["producer_error"] = prod.error

    # 2 and 5: ffmpeg plays a person clip into the fake webcam.
    wc: dict[str, Any] = {}
    RESULT["webcam"] = wc
    feed_log = (OUT / "feed.ffmpeg.log").open("w")
    feed = subprocess.Popen(
        [*FFMPEG, "-loglevel", "warning", "-re", "-stream_loop", "-1", "-i", cfg["clip"],
         "-pix_fmt", "yuyv422", "-f", "v4l2", cam],
        stderr=feed_log,
    )  # fmt: skip
    wc["camera_ready_s"] = wait_for(lambda: is_capture(cam), 30)
    m = Mattecam("webcam", mattecam_args(cfg, source=cam))
    t_start = m.t_start
    timeline: dict[str, float | None] = {"camera_opened": None, "vcam_ready": None,
                                         "camera_released": None}  # fmt: skip
    wc["timeline"] = timeline
    # 0.12 cannot report viewers: watching `idle_watch` s shows the camera stays open. 0.13+
    # should release it at once; the window only bounds a starved guest, the host judges.
    reports_viewers = not cfg["version"].startswith("0.12")
    t_end = now() + 90
    while now() < t_end and m.proc.poll() is None:
        held = holds(m.pid, cam)
        if held and timeline["camera_opened"] is None:
            timeline["camera_opened"] = now() - t_start
        if timeline["vcam_ready"] is None and is_capture(vcam):
            timeline["vcam_ready"] = now() - t_start
        if timeline["vcam_ready"] is not None:
            if not held:
                timeline["camera_released"] = now() - t_start
                break
            if not reports_viewers and now() - t_start - timeline["vcam_ready"] > cfg["idle_watch"]:
                break  # 0.12.x: no events, so the camera must stay open
        time.sleep(0.05)
    wc["held_without_reader"] = holds(m.pid, cam)
    watcher = UsageWatcher(vcam)
    wc["events_supported"] = watcher.ok
    t_reader = now()
    rd = FfmpegReader(vcam, "yuyv", w, h, "webcam")
    t_cam = None
    t_end = now() + cfg["collect_s"]
    while now() < t_end:
        watcher.poll()
        if t_cam is None and holds(m.pid, cam):
            t_cam = now()
        if len(rd.real(colour)) >= cfg["want"] and (t_cam is not None or not watcher.ok):
            break
        time.sleep(0.05)
    idx = rd.real(colour)
    first_real = rd.frames[idx[0]][0] if idx else None
    ev1 = watcher.first(1, t_reader)
    wc["reader_start"] = t_reader - t_start
    wc["event_1_after_reader_s"] = None if ev1 is None else ev1 - t_reader
    wc["camera_reopened_after_event_s"] = None if ev1 is None or t_cam is None else t_cam - ev1
    wc["first_frame_after_event_s"] = (
        None if ev1 is None or first_real is None else first_real - ev1
    )
    wc["first_frame_after_reader_s"] = None if first_real is None else first_real - t_reader
    t_stop = now()
    wc["reader"] = rd.stop()
    wc["reader"].update(rd.save(idx[: cfg["want"]]))
    t_released = None
    while now() - t_stop < (cfg["collect_s"] if watcher.ok else cfg["idle_watch"] + 3):
        watcher.poll()  # timestamps events as they arrive
        if t_released is None and not holds(m.pid, cam):
            t_released = now()
        if t_released is not None and (watcher.first(0, t_stop) or not watcher.ok):
            break
        time.sleep(0.05)
    ev0 = watcher.first(0, t_stop)
    wc["event_0_after_reader_stop_s"] = None if ev0 is None else ev0 - t_stop
    wc["released_after_reader_stop_s"] = None if t_released is None else t_released - t_stop
    wc["events"] = watcher.events
    watcher.close()
    wc["stop"] = m.stop("SIGTERM")
    wc["log"] = m.text()
    feed.terminate()
    feed.wait(10)
    feed_log.close()


def scenario_errors(cfg: dict) -> None:
    """Item 4: what the user sees when the virtual camera cannot be used."""
    w, h = cfg["size"]
    colour = cfg["colour_bgr"]
    errs: dict[str, Any] = {}
    RESULT["errors"] = errs
    RESULT["devices_no_module"] = run_cli(["devices"])
    base = [a for a in mattecam_args(cfg, source=cfg["clip"]) if a != "-v"]  # no tracebacks
    errs["no_module"] = run_cli(base)
    errs["no_module_auto"] = run_cli([*base[:2], "-o", "auto", *base[4:]])
    RESULT["modprobe"] = sh(["modprobe", "v4l2loopback", *cfg["modprobe"]])
    vivid = next(
        f"/dev/{n.name}"
        for n in sorted(Path("/sys/class/video4linux").iterdir())
        if "vivid" in (n / "name").read_text()
    )
    RESULT["vivid"] = vivid
    errs["capture_only"] = run_cli([*base[:2], "-o", vivid, *base[4:]])
    errs["vivid_usable_after"] = sh(
        ["v4l2-ctl", "-d", vivid, "--stream-mmap", "--stream-count=1", "--stream-to=/dev/null"]
    )
    big = cfg["too_big"]
    errs["too_big"] = run_cli([*base, "--width", str(big[0]), "--height", str(big[1])])
    errs["idle_after_too_big"] = is_idle_output("/dev/video10")
    # A format the driver substitutes: keep_format pins the previous producer's format.
    errs["pinned"] = sh(["v4l2-ctl", "-d", "/dev/video10", "-c", "keep_format=1"])
    prod = Producer("/dev/video10", 320, 240, 10, lambda _n: bytes(320 * 240 * 2))
    time.sleep(0.5)
    prod.close()
    errs["pinned"]["producer_written"] = prod.written
    errs["substituted"] = run_cli([*base[:5], "nv12", *base[6:]])
    errs["unpinned"] = sh(["v4l2-ctl", "-d", "/dev/video10", "-c", "keep_format=0"])
    # afterwards the virtual camera works
    ok: dict[str, Any] = {}
    errs["usable_after"] = ok
    m = Mattecam("usable", [*base, "--always-on", "-v"])
    ok["capture_after_s"] = wait_for(lambda: is_capture("/dev/video10"), 90)
    if ok["capture_after_s"] is not None:
        ok["reader"] = read_processed("/dev/video10", "yuyv", (w, h), "usable", colour=colour,
                                      want=2, timeout=cfg["collect_s"], writer=m.proc)  # fmt: skip
    ok["stop"] = m.stop("SIGTERM")
    ok["log"] = m.text()
    # A producer that writes without streaming (ffmpeg), then closes: 0.12 gets stuck.
    stuck: dict[str, Any] = {}
    errs["write_only_producer"] = stuck
    stuck["ffmpeg"] = sh(
        [*FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=10",
         "-frames:v", "5", "-pix_fmt", "yuyv422", "-f", "v4l2", "/dev/video10"]
    )  # fmt: skip
    stuck["caps_after"] = device_caps("/dev/video10")
    if cfg["version"].startswith("0.12"):  # (0.13+ would just run)
        stuck["mattecam"] = run_cli(base)
        # what the message says to do
        stuck["reload"] = [
            sh(["modprobe", "-r", "v4l2loopback"]),
            sh(["modprobe", "v4l2loopback", *cfg["modprobe"]]),
        ]
        stuck["idle_after_reload"] = is_idle_output("/dev/video10")


def scenario_browser(cfg: dict) -> None:
    """Item 7: headless Chromium finds the virtual camera by its label and shows it."""
    br: dict[str, Any] = {}
    RESULT["browser"] = br
    m = Mattecam("browser", mattecam_args(cfg, source=cfg["clip"], fmt=cfg["fmt"]))
    br["capture_after_s"] = wait_for(lambda: is_capture("/dev/video10"), 90)
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    cmd = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
           "--user-data-dir=/tmp/mattecam-chrome", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--mute-audio",
           "--disable-features=MediaRouter,OptimizationHints,Translate",
           "--enable-logging=stderr", "--v=0", f"file://{cfg['page']}?{cfg['query']}"]  # fmt: skip
    t0 = now()
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    timer = threading.Timer(cfg["browser_timeout"], proc.kill)
    timer.start()
    for line in proc.stderr:
        if "MATTECAM" in line:
            text = line.split('"', 1)[-1].rsplit('", source', 1)[0]
            lines.append(text)
            log("chrome:", text[:160])
            if text.startswith("MATTECAM-DONE"):
                break
    timer.cancel()
    proc.kill()
    proc.wait()
    br["seconds"] = now() - t0
    br["console"] = lines
    br["stop"] = m.stop("SIGTERM")
    br["log"] = m.text()


def main() -> int:
    global OUT
    scenario, config = sys.argv[1], Path(sys.argv[2])
    cfg = json.loads(config.read_text())
    OUT = Path(cfg["out"])
    RESULT["scenario"] = scenario
    try:
        {"formats": scenario_formats, "webcam": scenario_webcam, "errors": scenario_errors,
         "browser": scenario_browser}[scenario](cfg)  # fmt: skip
    finally:
        RESULT["elapsed"] = now()
        (OUT / "result.json").write_text(json.dumps(RESULT, indent=1, default=str))
        log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
