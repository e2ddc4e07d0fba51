"""``mattecam bench``: throughput, latency, CPU and memory of the real pipeline."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import itertools
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecam import __version__
from mattecam.config import Settings
from mattecam.errors import ConfigError
from mattecam.frame import Frame, Image
from mattecam.imaging import cover_fit, libyuv
from mattecam.imaging.yuv import as_bgr
from mattecam.metrics import Metrics, Snapshot, percentile
from mattecam.pipeline import Pipeline
from mattecam.process import FrameProcessor
from mattecam.sinks import NullSink, pixel_format
from mattecam.sinks.file import FileSink
from mattecam.sources.base import Source
from mattecam.sources.file import FileSource
from mattecam.sources.mjpeg import JpegReplaySource, encode_jpeg
from mattecam.specs import BackgroundSpec, OutputSpec
from mattecam.stages import build_processor

STAGES = ("decode", "preprocess", "inference", "refine", "composite", "convert", "write")


#: The settings a bench report lists among its options (they shape the measured work).
REPORTED_SETTINGS = (
    "model",
    "refine",
    "temporal",
    "crop",
    "edge_radius",
    "edge_eps",
    "threads",
    "light_wrap",
)


@dataclass
class BenchOptions:
    """What to measure; see ``mattecam bench --help``. ``settings`` are the run's own
    (model, refinement, light wrap...), so the bench builds stages as a run does; its
    outputs and background are the bench's: a null sink converting to ``pixel_format``,
    and ``background`` (``image``: a generated picture, else as ``-b``)."""

    settings: Settings = field(default_factory=lambda: Settings(outputs=(OutputSpec("null"),)))
    input: Path | None = None
    sizes: Sequence[tuple[int, int]] = ((1280, 720),)
    frames: int = 300
    codec: str = "mjpeg"
    chroma: str = "444"
    fps: float | None = None
    background: str = "image"
    pixel_format: str = "yuyv"
    live_seconds: float = 10.0
    cpu_load: bool = False
    batch: bool = True
    live: bool = True
    soak_frames: int = 0
    pipewire_seconds: float = 0.0


@dataclass
class SizeResult:
    """Everything measured at one size."""

    size: str
    frames: int
    input_mb: float = 0.0
    #: Peak RSS while the pipeline ran at this size, the input already prepared (MB); None
    #: where the kernel cannot reset the peak.
    run_peak_rss_mb: float | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    batch_fps: float | None = None
    live: dict[str, Any] = field(default_factory=dict)
    soak: dict[str, float] = field(default_factory=dict)
    pipewire: dict[str, Any] = field(default_factory=dict)


def rss_mb() -> float:
    """Resident memory of this process now, MB."""
    with Path("/proc/self/statm").open() as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (10^6 bytes, like :func:`rss_mb`;
    Linux gives ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def reset_peak_rss() -> bool:
    """Start the peak RSS (``VmHWM``) anew, so that the next reading covers only what runs
    from now on (Linux: write ``5`` to ``/proc/self/clear_refs``). False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def window_peak_rss_mb() -> float:
    """Peak resident memory since :func:`reset_peak_rss` (or the start), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return peak_rss_mb()


def synthetic_frame(size: tuple[int, int], i: int, base: Image) -> Image:
    """Frame ``i`` of the generated clip: texture and a moving figure (the pipeline's cost
    depends on the picture's size, not on what it shows)."""
    w, h = size
    img: Image = np.array(base, copy=True)
    cx = int(w * (0.3 + 0.4 * (0.5 + 0.5 * np.sin(i / 15))))
    cv2.ellipse(img, (cx, h // 3), (w // 12, h // 6), 0, 0, 360, (60, 90, 200), -1)
    cv2.rectangle(img, (cx - w // 7, h // 2), (cx + w // 7, h), (40, 40, 40), -1)
    return img


def input_frames(opts: BenchOptions, size: tuple[int, int]) -> tuple[Iterator[Image], float]:
    """The benchmark's frames at ``size`` (generated one at a time, never all held in
    memory, so RSS measures the pipeline) and their frame rate."""
    if opts.input is None:
        rng = np.random.default_rng(0)
        w, h = size
        noise = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        base = np.asarray(cv2.resize(noise, (w, h)), np.uint8)
        return (synthetic_frame(size, i, base) for i in range(opts.frames)), opts.fps or 30.0
    src = FileSource(opts.input)
    src.open()
    fps = opts.fps or src.fps

    def frames() -> Iterator[Image]:
        try:
            n = 0
            while n < opts.frames:
                f = src.read()
                if f is None:
                    if n == 0:
                        raise ConfigError(f"{opts.input} has no frames")
                    src.close()
                    src.open()  # a short clip is repeated
                    continue
                n += 1
                yield cover_fit(as_bgr(f.image), *size)
        finally:
            src.close()

    return frames(), fps


@dataclass
class Prepared:
    """The input of one size, encoded the way it will reach the pipeline."""

    size: tuple[int, int]
    fps: float
    frames: int
    jpegs: list[bytes] | None = None
    video: Path | None = None

    def source(self, *, live: bool) -> Source:
        if self.jpegs is not None:
            # The distinct JPEGs repeat until ``frames`` have been played (live: until
            # stopped).
            limit = None if live else self.frames
            return JpegReplaySource(self.jpegs, fps=self.fps, realtime=live, loop=True, limit=limit)
        assert self.video is not None
        return FileSource(self.video, realtime=live, loop=live)


#: At most this many distinct MJPEG frames are held in memory (two seconds of video),
#: played in a loop: 300 frames of 1080p MJPEG would hold over 100 MB that a camera never
#: does, and the peak RSS is meant to measure the pipeline.
DISTINCT_JPEGS = 60


def encode_input(
    path: Path | None, frames: int, fps: float | None, size: tuple[int, int], chroma: str
) -> tuple[list[bytes], float]:
    """The first :data:`DISTINCT_JPEGS` frames of the input at ``size`` as JPEGs (quality
    85, as cameras send), and their rate. Run in a child process by :func:`prepare`."""
    cv2.setNumThreads(1)
    it, rate = input_frames(BenchOptions(input=path, frames=frames, fps=fps), size)
    # 4:4:4 by default, as the benchmark always used (comparable with earlier tables);
    # webcams mostly send 4:2:2 (--chroma 422), which decodes faster.
    return [encode_jpeg(f, 85, chroma) for f in itertools.islice(it, DISTINCT_JPEGS)], rate


def prepare(opts: BenchOptions, size: tuple[int, int], tmp: Path) -> Prepared:
    """MJPEG in memory, or an H.264 file on disk.

    The JPEGs are made in a child process: decoding and scaling the clip leaves 40-55 MB
    of decoder state and freed heap behind in the process that does it, which a camera's
    run never has and which would count in the pipeline's peak RSS."""
    if opts.codec == "mjpeg":
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            jpegs, fps = pool.submit(
                encode_input, opts.input, opts.frames, opts.fps, size, opts.chroma
            ).result()
        return Prepared(size, fps, opts.frames, jpegs=jpegs)
    frames, fps = input_frames(opts, size)
    path = tmp / f"bench-{size[0]}x{size[1]}.mp4"
    sink = FileSink(path)
    sink.open(size, fps)
    for i, img in enumerate(frames):
        sink.write(Frame(img, i, 0.0))
    sink.close()
    return Prepared(size, fps, opts.frames, video=path)


def make_processor(opts: BenchOptions, size: tuple[int, int]) -> FrameProcessor:
    """The processing stage a run with ``opts.settings`` builds, over the bench's
    background."""
    background = opts.background
    if background == "image":
        w, h = size
        gradient = np.zeros((h, w, 3), np.uint8)
        gradient[..., 0] = np.linspace(40, 220, w, dtype=np.uint8)[None, :]
        gradient[..., 1] = np.linspace(200, 60, h, dtype=np.uint8)[:, None]
        gradient[..., 2] = 120
        path = Path(tempfile.gettempdir()) / f"mattecam-bench-bg-{w}x{h}.png"
        cv2.imwrite(str(path), gradient)
        background = str(path)
    spec = BackgroundSpec.parse(background)
    return build_processor(dataclasses.replace(opts.settings, background=spec))


def summarise_stages(metrics: Metrics) -> dict[str, dict[str, float]]:
    out = {}
    for name in STAGES:
        values = metrics.stages().get(name)
        if values:
            out[name] = {
                "median_ms": statistics.median(values),
                "p95_ms": percentile(values, 95),
            }
    return out


def run_batch(opts: BenchOptions, prepared: Prepared) -> tuple[float, Metrics]:
    """Every frame, as fast as possible, into a converting null sink."""
    metrics = Metrics(window=opts.frames + 10)
    pipeline = Pipeline(
        prepared.source(live=False),
        make_processor(opts, prepared.size),
        [NullSink(pixel_format(opts.pixel_format))],
        live=False,
        metrics=metrics,
    )
    before = metrics.snapshot()
    pipeline.run()
    # Frames written per second of the whole run, opening and closing included.
    return metrics.summary(before).fps_out, metrics


def run_soak(opts: BenchOptions, prepared: Prepared) -> dict[str, float]:
    """``soak_frames`` frames in batch mode (the input looped): does memory grow?

    RSS is sampled after a 500-frame warm-up and at the end; the growth between the two is
    what a long call would accumulate.
    """
    if prepared.jpegs is None:
        raise ConfigError("--soak needs --codec mjpeg")
    source = JpegReplaySource(prepared.jpegs, fps=prepared.fps, loop=True, limit=opts.soak_frames)
    marks: dict[str, float] = {}

    class Probe(NullSink):
        def write(self, frame: Frame) -> None:
            super().write(frame)
            if frame.seq == 500:
                marks["rss0"] = rss_mb()

    probe = Probe(pixel_format(opts.pixel_format))
    t0 = time.perf_counter()
    Pipeline(source, make_processor(opts, prepared.size), [probe], live=False).run()
    return {
        "frames": probe.frames_written,
        "seconds": time.perf_counter() - t0,
        "rss_after_warmup_mb": marks.get("rss0", float("nan")),
        "rss_end_mb": rss_mb(),
        "rss_growth_mb": rss_mb() - marks.get("rss0", float("nan")),
    }


PIPELINE_THREADS = ("capture", "process", "output")


#: The consumer the PipeWire hand-off is measured with, and the package that has it.
PW_CONSUMER = "gst-launch-1.0"
PW_CONSUMER_HINT = (
    "Debian/Ubuntu: sudo apt install gstreamer1.0-tools gstreamer1.0-pipewire; "
    "Fedora: sudo dnf install gstreamer1-plugins-base-tools pipewire-gstreamer"
)


def run_pipewire(size: tuple[int, int], seconds: float, fps: float = 30.0) -> dict[str, Any]:
    """The hand-off to PipeWire (``-o pipewire``) as the output thread pays it: a
    :class:`PipeWireSink` node read as I420 (the default format) by a ``pipewiresrc``
    consumer, written on a ``fps`` clock for ``seconds``; the time of each
    :meth:`~PipeWireSink.write` that sent a frame (conversion + copy into the buffer +
    queueing), and of its conversion alone.

    Raises:
        ConfigError: no ``gst-launch-1.0``, or it never linked.
        SinkError: no PipeWire (as ``-o pipewire`` says).
    """
    from mattecam.sinks.pipewire import PipeWireSink

    gst = shutil.which(PW_CONSUMER)
    if gst is None:
        raise ConfigError(f"--pipewire needs {PW_CONSUMER} to read the node ({PW_CONSUMER_HINT})")
    name = f"mattecam-bench-{os.getpid()}"
    w, h = size
    sink = PipeWireSink(name, "mattecam bench")
    sink.check()
    sink.open(size, fps)
    consumer = None
    try:
        consumer = subprocess.Popen(
            [gst, "-q", "pipewiresrc", f"target-object={name}", "!",
             "video/x-raw,format=I420", "!", "fakesink"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(2)]
        writes: list[float] = []
        converts: list[float] = []
        deadline = time.monotonic() + 10
        started = None
        i = 0
        tick = time.monotonic()
        while True:
            now = time.monotonic()
            if started is None and sink.viewers:
                started = now
            if started is None and now > deadline:
                raise ConfigError(f"the {PW_CONSUMER} consumer never linked to the bench node")
            if started is not None and now - started >= seconds:
                break
            frame = Frame(image=images[i % 2], seq=i, t_capture=now)
            before = sink.frames_written
            t = time.perf_counter()
            sink.write(frame)
            took = (time.perf_counter() - t) * 1e3
            if sink.frames_written > before:
                writes.append(took)
                converts.append(frame.timings["convert"])
            i += 1
            tick = max(tick + 1 / fps, time.monotonic() - 1 / fps)
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        if consumer is not None:
            consumer.terminate()
            try:
                consumer.wait(timeout=5)
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()
        sink.close()
    if not writes:
        raise ConfigError("the PipeWire consumer linked but took no frames")
    return {
        "format": "I420",
        "fps": fps,
        "frames": len(writes),
        "dropped": sink.frames_dropped,
        "write_median_ms": statistics.median(writes),
        "write_p95_ms": percentile(writes, 95),
        "convert_median_ms": statistics.median(converts),
    }


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each of the pipeline's named threads (Linux; {} where
    /proc does not tell)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in threading.enumerate():
        if t.name not in PIPELINE_THREADS or t.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def run_live(opts: BenchOptions, prepared: Prepared) -> dict[str, Any]:
    """Paced input for ``live_seconds``: CPU, latency, drops, memory."""
    fps = prepared.fps
    metrics = Metrics(window=int(opts.live_seconds * fps * 2) + 100)
    pipeline = Pipeline(
        prepared.source(live=True),
        make_processor(opts, prepared.size),
        [NullSink(pixel_format(opts.pixel_format))],
        live=True,
        fps=fps,
        metrics=metrics,
    )
    snaps: list[Snapshot] = []
    rss: list[float] = []
    threads0: dict[str, float] = {}
    threads1: dict[str, float] = {}

    def measure() -> None:
        # Skip the first second (model warm-up), then measure over the rest.
        time.sleep(1.0)
        threads0.update(thread_cpu_seconds())
        snaps.append(metrics.snapshot())
        rss.append(rss_mb())
        time.sleep(max(0.5, opts.live_seconds - 1.0))
        snaps.append(metrics.snapshot())
        rss.append(rss_mb())
        threads1.update(thread_cpu_seconds())
        pipeline.stop()

    timer = threading.Thread(target=measure, name="bench-timer", daemon=True)
    timer.start()
    pipeline.run()
    timer.join()
    window = metrics.summary(*snaps)  # rates, CPU and latencies of the measured seconds
    lat = window.latency_ms
    third = max(1, len(lat) // 3)
    total = metrics.snapshot()
    return {
        "fps": fps,
        "seconds": round(window.seconds, 2),
        "cpu_percent": window.cpu_percent,
        "latency_p50_ms": window.latency(50),
        "latency_p95_ms": window.latency(95),
        "latency_p99_ms": window.latency(99),
        "latency_first_third_p50_ms": percentile(lat[:third], 50),
        "latency_last_third_p50_ms": percentile(lat[-third:], 50),
        "frames_captured": total.captured,
        "frames_written": total.written,
        "dropped": total.dropped,
        "repeated": total.repeats,
        "rss_growth_mb": rss[1] - rss[0],
        "cpu_percent_by_thread": {
            name: 100.0 * (threads1[name] - threads0[name]) / window.seconds
            for name in PIPELINE_THREADS
            if name in threads0 and name in threads1
        },
    }


def busy_loop() -> subprocess.Popen[bytes]:
    """Another process keeping one core busy (a competing load)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark at every size; returns the JSON-able report."""
    if opts.codec not in ("mjpeg", "h264"):
        raise ConfigError(f"--codec must be mjpeg or h264, got {opts.codec!r}")
    pixel_format(opts.pixel_format)
    cv2.setNumThreads(1)
    load = busy_loop() if opts.cpu_load else None
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="mattecam-bench-") as tmp_name:
            tmp = Path(tmp_name)
            for size in opts.sizes:
                prepared = prepare(opts, size, tmp)
                held = sum(map(len, prepared.jpegs or ())) / 1e6
                r = SizeResult(size=f"{size[0]}x{size[1]}", frames=opts.frames, input_mb=held)
                gc.collect()
                windowed = reset_peak_rss()  # the bench's own preparation is not the pipeline
                if opts.batch:
                    r.batch_fps, m = run_batch(opts, prepared)
                    r.stages = summarise_stages(m)
                if opts.live:
                    r.live = run_live(opts, prepared)
                if opts.soak_frames:
                    r.soak = run_soak(opts, prepared)
                if opts.pipewire_seconds:
                    r.pipewire = run_pipewire(size, opts.pipewire_seconds)
                if windowed:
                    r.run_peak_rss_mb = window_peak_rss_mb()
                results.append(r)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    del options["settings"]
    options.update({k: getattr(opts.settings, k) for k in REPORTED_SETTINGS})
    return {
        "version": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}",
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "libyuv": libyuv.available(),
        "options": options,
        "peak_rss_mb": peak_rss_mb(),
        "results": [vars(r) for r in results],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def format_table(report: dict[str, Any]) -> str:
    """The report as a readable table."""
    lines = [f"mattecam {report['version']} bench on {report['machine']}"]
    yuv = "libyuv (SIMD)" if report.get("libyuv") else "OpenCV (libyuv0 not installed)"
    lines.append(f"frames in I420 from decode to output; blend and packing by {yuv}")
    o = report["options"]
    lines.append(
        f"input: {o['input'] or 'synthetic'} as {o['codec']}"
        f"{' ' + o.get('chroma', '444') if o['codec'] == 'mjpeg' else ''}, "
        f"model {o['model']}, refine "
        f"{o['refine']}{'+temporal' if o['temporal'] else ''}{'+crop' if o['crop'] else ''}, "
        f"background {o['background']}, "
        f"output {o['pixel_format']}{', with a competing load' if o['cpu_load'] else ''}"
    )
    for r in report["results"]:
        held = f", input {r['input_mb']:.0f} MB in memory" if r.get("input_mb") else ""
        lines.append(f"\n{r['size']} ({r['frames']} frames{held})")
        if r.get("run_peak_rss_mb"):
            lines.append(
                f"  peak RSS while running (input prepared): {r['run_peak_rss_mb']:.0f} MB"
            )
        if r["stages"]:
            lines.append("  stage        median ms   p95 ms")
            for name, s in r["stages"].items():
                lines.append(f"  {name:12} {s['median_ms']:9.2f} {s['p95_ms']:8.2f}")
        if r["batch_fps"] is not None:
            lines.append(f"  batch throughput: {r['batch_fps']:.1f} fps")
        lv = r["live"]
        if lv:
            lines.append(
                f"  live at {lv['fps']:g} fps for {lv['seconds']} s: CPU {lv['cpu_percent']:.1f}% "
                f"of one core, latency p50 {lv['latency_p50_ms']:.1f} / p95 "
                f"{lv['latency_p95_ms']:.1f} / p99 {lv['latency_p99_ms']:.1f} ms (first third "
                f"p50 {lv['latency_first_third_p50_ms']:.1f}, last third "
                f"{lv['latency_last_third_p50_ms']:.1f}), dropped {lv['dropped']}, repeated "
                f"{lv['repeated']}, RSS growth {lv['rss_growth_mb']:+.1f} MB"
            )
            by_thread = lv.get("cpu_percent_by_thread")
            if by_thread:
                parts = ", ".join(f"{k} {v:.1f}%" for k, v in by_thread.items())
                lines.append(f"  live CPU by thread (% of one core): {parts}")
        sk = r.get("soak")
        if sk:
            lines.append(
                f"  soak: {sk['frames']} frames in {sk['seconds']:.0f} s, RSS "
                f"{sk['rss_after_warmup_mb']:.1f} MB after warm-up -> {sk['rss_end_mb']:.1f} MB "
                f"({sk['rss_growth_mb']:+.1f} MB)"
            )
        pw = r.get("pipewire")
        if pw:
            lines.append(
                f"  PipeWire hand-off ({pw['format']}, {pw['frames']} frames to pipewiresrc at "
                f"{pw['fps']:g} fps): write p50 {pw['write_median_ms']:.2f} / p95 "
                f"{pw['write_p95_ms']:.2f} ms, of which conversion p50 "
                f"{pw['convert_median_ms']:.2f} ms; dropped {pw['dropped']}"
            )
    lines.append(
        f"\npeak RSS {report['peak_rss_mb']:.0f} MB (the whole process, preparing inputs too)"
    )
    return "\n".join(lines)
