"""The ``mattecam`` command line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mattecam import __version__
from mattecam.config import CHOICES, Settings
from mattecam.errors import ConfigError, MattecamError, ModelError

if TYPE_CHECKING:
    from mattecam.metrics import Metrics
    from mattecam.pipeline import Pipeline

log = logging.getLogger("mattecam")

DESCRIPTION = """\
Replace, blur or recolour the background behind the person in a camera or video, and send
the result to a virtual camera (v4l2loopback) that video-call apps can pick, a video file,
or a preview window.

Examples:
  mattecam -i 0 -b beach.jpg -o /dev/video10      camera 0 into the virtual camera /dev/video10
  mattecam -i 0 -o auto -b blur --preview         the first virtual camera, and a window
  mattecam -i 0 --preview -b background.jpg      camera 0, picture background, in a window
  mattecam -i talk.mp4 -o out.mp4 -b blur         a video file to a file, background blurred
  mattecam -i /dev/video2 --width 1280 --height 720 --fps 30 --preview -b '#336699'
  mattecam -i clip.mp4 -o null -v                 process as fast as possible, print fps
  mattecam -o auto --control                      and a control page on 127.0.0.1

Settings can also live in a config file, ~/.config/mattecam/config.toml ($XDG_CONFIG_HOME
is honoured; --config picks another): one line per setting, named as in `--help` with
underscores (blur_strength = 20, outputs = ["auto"], mirror = true). Options given here win
over the file. Editing the file while mattecam runs changes the background, blur, model,
edge settings, light wrap and mirror at once, without reopening the virtual camera.

Other commands (each has --help):
  mattecam models [list|fetch|verify]             the segmentation models and their cache
  mattecam eval --manifest CSV | --clip DIR       score the matte against ground truth
  mattecam bench [--input CLIP] [--size WxH]      measure speed, latency, CPU and memory
  mattecam devices                                list cameras and virtual cameras
  mattecam ctl status|background|pause|...        control a running mattecam (--control)
  mattecam doctor                                 check the driver, permissions, cameras,
                                                  models, and print the fix for each problem
  mattecam install-service [-- OPTIONS]           start mattecam at login (systemd user unit)

Stopping: Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stop cleanly: every file output
gets the frames written so far and is finalised, the camera and virtual camera are
released. Pressing Ctrl-C twice changes nothing; three times gives up at once, deleting
unfinished files. A file output is never left half-written: it is complete or absent.

Exit status: 0 done; 1 a failure while setting up or running (a busy camera, a full disk,
a corrupt model); 2 a usage error (an invalid option or config value, an unknown name, a
file or device that does not exist or is not what it should be); 128+N stopped by signal
N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP) after finishing the outputs.
"""

SUBCOMMANDS = ("models", "eval", "bench", "devices", "ctl", "doctor", "install-service")


def build_parser() -> argparse.ArgumentParser:
    """The parser for a normal run."""
    p = argparse.ArgumentParser(
        prog="mattecam",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Settings.__dataclass_fields__
    io = p.add_argument_group("input and output")
    io.add_argument(
        "-i",
        "--input",
        default=d["input"].default,
        metavar="SOURCE",
        help="camera number (0), camera device (/dev/video0) or video file (default: 0).",
    )
    io.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="play a video file input over and over instead of stopping at its end.",
    )
    io.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        dest="outputs",
        metavar="OUTPUT",
        help="where the result goes: a virtual camera (/dev/videoN, or 'auto' for the first "
        "v4l2loopback device), a PipeWire camera needing no kernel module ('pipewire', "
        "'pipewire:NAME' for the node name, 'pipewire:NAME:DESCRIPTION' to also change the "
        "name apps show, 'mattecam' by default; NAME may be empty: 'pipewire::Office cam'), "
        "a video file (.mp4, .mkv, .mov, .webm; it gets the input's frame rate) or 'null' "
        "to discard frames (for measuring speed). "
        "May be given more than once; given here, it replaces the config file's outputs.",
    )
    io.add_argument(
        "--output-format",
        choices=CHOICES["output_format"],
        default="yuyv",
        help="pixel format written to the virtual camera: yuyv (default) works everywhere; "
        "Chrome also takes i420, nv12 and rgb24.",
    )
    io.add_argument(
        "--always-on",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the camera and processing running even when no app is watching the "
        "virtual camera (by default they pause, and the camera light goes off, until an app "
        "opens it; this needs v4l2loopback 0.13 or newer).",
    )
    io.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show the result in a window; press q or Esc (or close it) to quit.",
    )
    io.add_argument(
        "--width",
        type=int,
        metavar="PIXELS",
        help="output width; the picture is scaled to cover it and cropped, never stretched. "
        "For a camera, also the width asked of the camera. Default: the input's.",
    )
    io.add_argument("--height", type=int, metavar="PIXELS", help="output height (see --width).")
    io.add_argument(
        "--fps",
        type=float,
        help="frame rate to ask of the camera and to write live outputs at (default: the "
        "input's); a file made from a video file keeps the input's rate and duration.",
    )
    io.add_argument(
        "--camera-format",
        choices=CHOICES["camera_format"],
        default="auto",
        help="pixel format to ask of the camera: mjpeg is what most USB webcams need for HD "
        "at 30 fps; auto picks mjpeg above 640x480 (default: auto).",
    )
    io.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="flip the picture left-right, like a mirror.",
    )

    bg = p.add_argument_group("background")
    bg.add_argument(
        "-b",
        "--background",
        default=d["background"].default,
        metavar="BACKGROUND",
        help="an image file (scaled to cover the frame), a video file (looped), 'blur' (the "
        "room, blurred), 'none' (no change), or a colour: a name like green, #RRGGBB or "
        "R,G,B (default: green).",
    )
    bg.add_argument(
        "--blur",
        type=float,
        default=d["blur_strength"].default,
        dest="blur_strength",
        metavar="STRENGTH",
        help="how strong the 'blur' background is, 0-100: the blur radius in pixels at 720p "
        "(default: %(default)g).",
    )
    bg.add_argument(
        "--light-wrap",
        type=float,
        default=d["light_wrap"].default,
        metavar="STRENGTH",
        help="let the new background's light spill onto the person's edge, 0-1, so they sit "
        "in the scene rather than look cut out; 0 turns it off (default: %(default)g).",
    )

    add_matte_options(p)

    ctl = p.add_argument_group("live control")
    ctl.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="read settings from this TOML file instead of ~/.config/mattecam/config.toml; "
        "edits to it while mattecam runs are applied at once.",
    )
    ctl.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="serve a control page on 127.0.0.1 (this machine only): live preview, "
        "background, blur, pause, status. mattecam prints its address, which carries a "
        "private token; `mattecam ctl` uses the same API.",
    )
    ctl.add_argument(
        "--control-port",
        type=int,
        default=d["control_port"].default,
        metavar="PORT",
        help="port of the control page (default: %(default)s; 0 picks a free one).",
    )

    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="print a status line every 2 s (fps in/out, drops, latency) and full error "
        "details; -vv for debug logs.",
    )
    p.add_argument("--version", action="version", version=f"mattecam {__version__}")
    return p


def add_matte_options(p: argparse.ArgumentParser) -> None:
    """Model and refinement options, shared by a run, ``eval`` and ``bench``."""
    d = Settings.__dataclass_fields__
    seg = p.add_argument_group("segmentation and edges")
    seg.add_argument(
        "--model",
        default=d["model"].default,
        help="'landscape' (256x144 input, fastest; best for 16:9 video), 'general' (256x256 "
        "input) or a path to a .tflite selfie segmentation model. Named models are "
        "downloaded on first use; see `mattecam models` (default: landscape).",
    )
    seg.add_argument(
        "--threads",
        type=int,
        default=d["threads"].default,
        help="threads for the model (default: 1; more is rarely faster on small machines).",
    )
    seg.add_argument(
        "--refine",
        choices=CHOICES["refine"],
        default=d["refine"].default,
        help="how the low-resolution mask is brought to full size: 'guided' follows the "
        "picture's own edges (hair, shoulders), 'bilinear' is a plain soft enlargement "
        "(default: %(default)s).",
    )
    seg.add_argument(
        "--temporal",
        action=argparse.BooleanOptionalAction,
        default=d["temporal"].default,
        help="smoothing of the mask over time: it removes edge flicker where the picture is "
        "still, and follows motion at once where it is not; --no-temporal turns it off.",
    )
    seg.add_argument(
        "--crop",
        action=argparse.BooleanOptionalAction,
        default=d["crop"].default,
        help="run the model on a crop around the person, found in the previous frame, "
        "instead of the whole frame: far more detail for someone not close to the camera; "
        "a close-up is not cropped (--no-crop turns it off).",
    )
    seg.add_argument(
        "--edge-radius",
        type=int,
        default=d["edge_radius"].default,
        metavar="PIXELS",
        help="guided refinement window radius, in model-resolution pixels: larger follows "
        "edges farther from the model's guess (default: %(default)s).",
    )
    seg.add_argument(
        "--edge-eps",
        type=float,
        default=d["edge_eps"].default,
        metavar="EPS",
        help="guided refinement smoothness: smaller follows fainter edges, larger is softer "
        "(default: %(default)g).",
    )


def matte_settings(ns: argparse.Namespace, **more: object) -> Settings:
    """The :class:`Settings` of ``eval`` and ``bench`` (which measure without outputs) from
    their matte options (:func:`add_matte_options`) and ``more``."""
    keys = ("model", "threads", "refine", "temporal", "crop", "edge_radius", "edge_eps")
    return Settings(outputs=("null",), **{k: getattr(ns, k) for k in keys}, **more)  # type: ignore[arg-type]


def build_eval_parser() -> argparse.ArgumentParser:
    """The parser for ``mattecam eval``."""
    p = argparse.ArgumentParser(
        prog="mattecam eval",
        description="Score the segmentation model plus edge refinement against ground-truth "
        "masks: IoU (alpha >= 0.5), boundary F (DAVIS, tolerance 0.0075 x diagonal), MAE, "
        "and for clips flicker (mean |alpha_t - alpha_t-1| where the truth did not change), "
        "plus the refinement's median ms per frame.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--manifest",
        type=Path,
        metavar="CSV",
        help="a CSV with columns name,image,mask (paths relative to it; masks 8-bit, 255 = "
        "person).",
    )
    src.add_argument(
        "--clip",
        type=Path,
        metavar="DIR",
        help="a clip DIR/<name>.mp4 with one mask per frame in DIR/masks/00000.png, ...; "
        "frames are processed in order, as live (temporal smoothing included).",
    )
    p.add_argument("--set", dest="subset", help="only manifest rows whose 'set' is this.")
    p.add_argument("--limit", type=int, help="score at most this many images or frames.")
    p.add_argument("--json", action="store_true", help="print one JSON object.")
    add_matte_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail.")
    return p


def parse_size(text: str) -> tuple[int, int]:
    """``1280x720`` -> (1280, 720)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"{text!r} is outside 16x16..7680x4320")
    return w, h


def build_bench_parser() -> argparse.ArgumentParser:
    """The parser for ``mattecam bench``."""
    p = argparse.ArgumentParser(
        prog="mattecam bench",
        description="Run the real pipeline on a clip and report per-stage times (median, "
        "p95), batch throughput (every frame as fast as possible into a null sink that "
        "converts to the virtual camera's format), and live behaviour (paced at the clip's "
        "frame rate: CPU use, capture-to-write latency, drops, memory). By default frames "
        "are fed as MJPEG (JPEG quality 85), as HD webcams deliver them.",
    )
    p.add_argument(
        "--input",
        type=Path,
        metavar="CLIP",
        help="a video whose first --frames frames are used, scaled to each --size "
        "(default: a generated clip).",
    )
    p.add_argument(
        "--size",
        type=parse_size,
        action="append",
        metavar="WxH",
        help="frame size; repeat for several (default: 1280x720).",
    )
    p.add_argument("--frames", type=int, default=300, help="frames per run (default: 300).")
    p.add_argument(
        "--codec",
        choices=("mjpeg", "h264"),
        default="mjpeg",
        help="how frames reach the pipeline: mjpeg (camera-like, default) or h264 (a file).",
    )
    p.add_argument(
        "--chroma",
        choices=("444", "422", "420"),
        default="444",
        help="chroma subsampling of the MJPEG frames: 444 (default, as earlier tables), "
        "422 (what most webcams send) or 420.",
    )
    p.add_argument("--fps", type=float, help="live frame rate (default: the clip's, or 30).")
    p.add_argument(
        "-b",
        "--background",
        default="image",
        help="image (a generated picture, default), blur, a colour, none, or a file.",
    )
    p.add_argument(
        "--format",
        dest="pixel_format",
        default="yuyv",
        help="pixel format the null sink converts to (default: yuyv).",
    )
    p.add_argument(
        "--live-seconds",
        type=float,
        default=10.0,
        help="length of the live run (default: 10).",
    )
    p.add_argument("--no-batch", dest="batch", action="store_false", help="skip the batch run.")
    p.add_argument("--no-live", dest="live", action="store_false", help="skip the live run.")
    p.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="FRAMES",
        help="also run this many frames (the input looped) and report memory growth.",
    )
    p.add_argument(
        "--pipewire",
        type=float,
        nargs="?",
        const=5.0,
        default=0.0,
        metavar="SECONDS",
        help="also measure the hand-off to a PipeWire camera (-o pipewire): publish a node, "
        "read it as I420 with gst-launch-1.0 pipewiresrc, and time each write for SECONDS "
        "(default: 5) at 30 fps. Needs a running PipeWire.",
    )
    p.add_argument(
        "--load",
        action="store_true",
        help="keep one core busy with another process during the runs (a competing load).",
    )
    p.add_argument(
        "--light-wrap", type=float, default=0.0, metavar="STRENGTH", help="as for a run."
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON.")
    add_matte_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail.")
    return p


def build_models_parser() -> argparse.ArgumentParser:
    """The parser for ``mattecam models``."""
    p = argparse.ArgumentParser(
        prog="mattecam models",
        description="List, fetch and verify the segmentation models. They come from the "
        "mediapipe 0.10.21 wheel on PyPI (downloaded with pip; mediapipe itself is not "
        "installed) and are kept in ~/.cache/mattecam/models ($MATTECAM_CACHE_DIR overrides).",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("list", "fetch", "verify"),
        default="list",
        help="list (default): show models and whether they are cached; fetch: download "
        "missing ones; verify: check the cached files' checksums (exit 1 if any is bad).",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if cached.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail.")
    return p


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="mattecam: %(message)s", stream=sys.stderr)
    if verbose < 2:
        logging.getLogger("mattecam").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mattecam`` script; returns the exit code.

    Messages go to stderr through a :class:`_SafeStream`: a closed pipe (``| head``), a
    terminal that hung up or a closed stderr (``2>&-``) silences them instead of stopping
    the run.
    """
    _reopen_closed_std_fds()
    stderr = sys.stderr
    safe = _SafeStream(stderr)
    sys.stderr = safe
    try:
        return _main(argv)
    finally:
        if not safe.failed:
            sys.stderr = stderr  # else keep the wrapper: the real stream is gone


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        command = {
            "models": run_models,
            "eval": run_eval,
            "bench": run_bench,
            "devices": run_devices,
            "ctl": run_ctl,
            "doctor": run_doctor,
            "install-service": run_install_service,
        }[args[0]]
        return _guarded(lambda: command(args[1:]), verbose=_count_verbose(args))
    return _guarded(lambda: run_main(args), verbose=_count_verbose(args))


def _count_verbose(args: list[str]) -> int:
    n = 0
    for a in args:
        if a == "--verbose":
            n += 1
        elif a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"}:
            n += len(a) - 1
    return n


def _guarded(fn: Callable[[], int], *, verbose: int) -> int:
    """Run ``fn``, turning errors into one message and a non-zero exit code."""
    try:
        return fn()
    except MattecamError as e:
        if verbose:
            log.exception("error")
        print(f"mattecam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        # Raised by StopOnSignals (with the signal's name) before anything was opened.
        name = str(e.args[0]) if e.args and str(e.args[0]) in signal.Signals.__members__ else ""
        signum = signal.Signals[name] if name else signal.SIGINT
        print(f"mattecam: stopped by {signum.name} before starting", file=sys.stderr)
        return 128 + signum
    except Exception as e:
        if verbose:
            log.exception("unexpected error")
        print(
            f"mattecam: unexpected error: {type(e).__name__}: {e}\n"
            "Run again with -v for details, and please report it.",
            file=sys.stderr,
        )
        return 1


#: Marks a setting the command line did not give (argparse keeps a namespace's attributes).
_NOT_GIVEN = object()


def parse_run_args(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, object]]:
    """Parse a run's command line, once: the namespace (``verbose``, ``config``) and the
    settings given as flags, only those, so that they win over the config file while the
    file wins over the defaults.

    Raises:
        SystemExit: argparse's usage error (exit status 2), or after ``--help``.
    """
    names = set(Settings.__dataclass_fields__)
    # A setting already in the namespace keeps its value unless a flag sets it; ``outputs``
    # starts as None, which the append action of -o extends like an empty list.
    ns = argparse.Namespace(**{name: _NOT_GIVEN for name in names})
    ns.outputs = None
    build_parser().parse_args(list(argv), namespace=ns)
    given = {
        k: v for k, v in vars(ns).items() if k in names and v is not _NOT_GIVEN and v is not None
    }
    if "outputs" in given:
        given["outputs"] = tuple(given["outputs"])
    return ns, given


def explicit_settings(argv: Sequence[str]) -> dict[str, object]:
    """The settings given as flags in ``argv`` (see :func:`parse_run_args`)."""
    return parse_run_args(argv)[1]


def run_main(argv: list[str]) -> int:
    """``mattecam [options]``: run the pipeline until the input ends or the user stops it."""
    from mattecam import configfile
    from mattecam.signals import StopOnSignals

    ns, given = parse_run_args(argv)
    setup_logging(ns.verbose)
    with StopOnSignals() as signals:
        config = configfile.load(given, ns.config)
        from mattecam.app import LiveSession

        with LiveSession(config.settings, config=config) as session:
            pipeline = session.pipeline
            if session.control_url:
                print(f"mattecam: control page: {session.control_url}", file=sys.stderr)
            signals.attach(pipeline.stop, pipeline.discard_unfinished)
            metrics = pipeline.run(
                status_interval=2.0 if ns.verbose else None,
                on_status=lambda line: print(f"mattecam: {line}", file=sys.stderr),
            )
    if ns.verbose:
        print(
            f"mattecam: done: {metrics.captured} frames in, {metrics.processed} processed, "
            f"{metrics.written} written",
            file=sys.stderr,
        )
    if signals.exit_code is None:
        return 0
    summary = _written_summary(pipeline, metrics)
    print(f"mattecam: stopped by {signals.name}: {summary}", file=sys.stderr)
    return signals.exit_code


def _written_summary(pipeline: Pipeline, metrics: Metrics) -> str:
    """What a stopped run left behind, for the user: each file and its frame count."""
    expected = pipeline.expected_frames
    of = f" of {expected}" if expected and not pipeline.live else ""
    parts = [
        f"{path} holds the {n}{of} frames written (complete)"
        if n
        else f"no frames were written, so {path} was not created"
        for path, n in pipeline.files()
    ]
    return "; ".join(parts) or f"{metrics.written} frames were written"


class _SafeStream(io.TextIOBase):
    """A text stream over another that never raises: after the first failed write or
    flush (EPIPE from a closed pipe, EIO from a hung-up terminal, a closed stream) it
    discards everything. Logging must never stop the video."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.failed = stream is None

    def write(self, text: str) -> int:
        if not self.failed and self._stream is not None:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # ValueError: the stream was closed
                self.failed = True
        return len(text)

    def flush(self) -> None:
        if not self.failed and self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.failed = True

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2 if self._stream is None else self._stream.fileno()


def _reopen_closed_std_fds() -> None:
    """Give a closed stdin, stdout or stderr (``2>&-``) /dev/null: otherwise the next file
    opened (an output file, the virtual camera) would get its number, and native libraries
    printing to fd 2 would write into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def run_models(argv: list[str]) -> int:
    """``mattecam models``: list, fetch or verify the cached models."""
    from mattecam.segmentation import models

    ns = build_models_parser().parse_args(argv)
    setup_logging(ns.verbose)
    if ns.action == "fetch":
        paths = models.fetch(force=ns.force)
        for name, path in paths.items():
            print(f"{name}: {path}")
        return 0
    bad = 0
    print(f"cache: {models.cache_dir()}")
    for info in models.MODELS.values():
        path = models.cached_path(info)
        if not path.is_file():
            state = "not cached (mattecam models fetch)"
            bad += ns.action == "verify"
        elif ns.action == "verify" or ns.verbose:
            ok = models.verify(info, path)
            state = "ok (sha256 verified)" if ok else "CORRUPT (mattecam models fetch --force)"
            bad += not ok
        else:
            state = "cached"
        w, h = info.input_size
        print(f"{info.name:10} {w}x{h}  {state}\n           {info.description}")
    if bad:
        raise ModelError(f"{bad} model(s) missing or corrupt; run `mattecam models fetch`.")
    return 0


def run_eval(argv: list[str]) -> int:
    """``mattecam eval``: score the matte on a manifest of images or on a clip."""
    from mattecam.evaluation.run import clip_samples, evaluate, manifest_samples
    from mattecam.stages import build_matte

    ns = build_eval_parser().parse_args(argv)
    setup_logging(ns.verbose)
    settings = matte_settings(ns)
    temporal = ns.clip is not None
    samples = (
        clip_samples(ns.clip, limit=ns.limit)
        if temporal
        else manifest_samples(ns.manifest, subset=ns.subset, limit=ns.limit)
    )
    matting = build_matte(settings)
    try:
        result = evaluate(samples, matting, temporal=temporal)
    finally:
        matting.close()
    result.update(model=ns.model, refine=ns.refine, temporal=ns.temporal and temporal, crop=ns.crop)
    if ns.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:14} {value:.4f}" if isinstance(value, float) else f"{key:14} {value}")
    if not result["n"]:
        raise ConfigError("nothing was scored: the manifest or clip lists no usable frames.")
    return 0


def run_bench(argv: list[str]) -> int:
    """``mattecam bench``: measure the pipeline."""
    from mattecam import bench

    ns = build_bench_parser().parse_args(argv)
    setup_logging(ns.verbose)
    opts = bench.BenchOptions(
        settings=matte_settings(ns, light_wrap=ns.light_wrap),
        input=ns.input,
        sizes=ns.size or [(1280, 720)],
        frames=ns.frames,
        codec=ns.codec,
        chroma=ns.chroma,
        fps=ns.fps,
        background=ns.background,
        pixel_format=ns.pixel_format,
        live_seconds=ns.live_seconds,
        cpu_load=ns.load,
        batch=ns.batch,
        live=ns.live,
        soak_frames=ns.soak,
        pipewire_seconds=ns.pipewire,
    )
    report = bench.run(opts)
    print(json.dumps(report, indent=2) if ns.json else bench.format_table(report))
    return 0


def run_devices(argv: list[str]) -> int:
    """``mattecam devices``: list cameras and virtual cameras."""
    from mattecam import devices

    argparse.ArgumentParser(
        prog="mattecam devices",
        description="List cameras (formats, sizes, frame rates), v4l2loopback virtual "
        "cameras (label, whether they are free), with the setup command when none exist, and "
        "PipeWire cameras (from pw-dump, when PipeWire runs).",
    ).parse_args(argv)
    print(devices.report())
    return 0


def run_ctl(argv: list[str]) -> int:
    """``mattecam ctl``: talk to a running mattecam's control server."""
    from mattecam.control import client

    for line in client.run(argv):
        print(line)
    return 0


def run_doctor(argv: list[str]) -> int:
    """``mattecam doctor``: check the setup; exit 1 when a problem was found."""
    from mattecam import doctor

    argparse.ArgumentParser(
        prog="mattecam doctor",
        description="Check what mattecam needs: the v4l2loopback driver (loaded? version? "
        "exclusive_caps? devices and their labels), permission to open the video devices "
        "(the video group), cameras and their formats, PipeWire (for -o pipewire, and what "
        "each kind of app needs to see a PipeWire camera), the model cache, the config file "
        "and the login service. Each problem is printed with the command that fixes it. Exit "
        "status 1 when something is broken.",
    ).parse_args(argv)
    findings = doctor.run_checks()
    print(doctor.format_report(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def run_install_service(argv: list[str]) -> int:
    """``mattecam install-service``: write the systemd user unit."""
    import subprocess

    from mattecam import configfile, service

    before, sep, after = _split_at_double_dash(argv)
    p = argparse.ArgumentParser(
        prog="mattecam install-service",
        description="Write a systemd user unit (~/.config/systemd/user/mattecam.service) that "
        "starts mattecam at login with the config file's settings and any OPTIONS given "
        "after --, e.g. `mattecam install-service -- -o /dev/video10 -b blur --control`. "
        "Without an output anywhere, -o auto (the first virtual camera) is used. Then "
        f"enable it with: {service.ENABLE}",
    )
    p.add_argument("--dry-run", action="store_true", help="print the unit, write nothing.")
    p.add_argument(
        "--enable",
        action="store_true",
        help="also run systemctl --user daemon-reload and enable --now mattecam.",
    )
    ns = p.parse_args(before)
    options = list(after) if sep else []
    run_ns, given = parse_run_args(options)  # refuses what a run would refuse
    path_arg = run_ns.config
    try:
        configfile.load(given, path_arg)
    except ConfigError:
        if "outputs" in given:
            raise
        options = ["-o", "auto", *options]
        configfile.load(explicit_settings(options), path_arg)  # anything else still wrong?
        print(
            "mattecam: no output configured: the service writes to -o auto (the first "
            "virtual camera)",
            file=sys.stderr,
        )
    path, text = service.install(options, dry_run=ns.dry_run)
    if ns.dry_run:
        print(f"# {path} (not written: --dry-run)")
        print(text, end="")
        return 0
    print(f"wrote {path}")
    if ns.enable:
        for cmd in (
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", "mattecam"],
        ):
            try:
                subprocess.run(cmd, check=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as e:
                raise MattecamError(
                    f"`{' '.join(cmd)}` failed ({e}); the unit is written, enable it with: "
                    f"{service.ENABLE}"
                ) from e
        print("mattecam now starts at login (and is running now)")
    else:
        print(f"start it now and at every login with:\n  {service.ENABLE}")
    return 0


def _split_at_double_dash(argv: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], "--", argv[i + 1 :]
    return argv, "", []
