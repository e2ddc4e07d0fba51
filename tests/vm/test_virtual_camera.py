"""mattecam against real v4l2loopback devices (0.12.7 and 0.15.0) in the test VM.

Each scenario is one VM boot, driven inside the guest by ``vcam_guest.py``, which only
records; the tests below judge. Consumers are independent of mattecam: ffmpeg
(``-f v4l2 ... -fps_mode passthrough``), OpenCV (``cv2.VideoCapture(dev, cv2.CAP_V4L2)``)
and headless Chromium (``getUserMedia``).

The picture: a short cut of the hand-labelled ``tennis`` clip from ../shared/data (cropped
around the player, 192x144, 8 fps), with its ground-truth masks cut the same way. A frame
read back is matched to the clip frame it came from (the person's pixels pass through
unchanged); where that frame's mask says background (a few pixels away from the person)
the pixels must be the chosen background colour, and the person must be there.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import harness
import numpy as np
import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VERSIONS = harness.LOOPBACK_VERSIONS
W, H = 192, 144
FPS = 8
CROP = (80, 60, 560, 420)  # x0, y0, x1, y1 in the 854x480 tennis clip: 480x360 -> 192x144
# Not in the scene, and R != B so that a red/blue swap cannot pass.
COLOUR_RGB = (40, 220, 160)
COLOUR_BGR = COLOUR_RGB[::-1]
COLOUR_ARG = "#28DCA0"
# The colour a live edit of the config file switches to (far from the scene's colours too).
COLOUR2_RGB = (220, 40, 220)
COLOUR2_BGR = COLOUR2_RGB[::-1]
COLOUR2_ARG = "#DC28DC"
TOLERANCE = 40  # max channel difference that still counts as the background colour
# Only the card_label of the first device is ours; the second is the fake webcam.
MODPROBE = 'devices=2 video_nr=10,11 exclusive_caps=1,1 card_label="mattecam","fakecam"'
TIMINGS: dict[str, float] = {}

# --- time bounds: margins, not measurements --------------------------------------------------
# The guest is emulated (TCG) on a 2-core host that other processes share, so how fast it runs
# depends on the host's load. A time bound below is a design figure at the speed of an idle
# host, stretched by how much slower mattecam processed frames in the same boot (its own
# ``processed N fps`` status line); it catches "never" and "many times slower than designed",
# not a busy host. The measured figures are in docs/virtual-camera.md ("Measured in the VM");
# the host-side benchmark (``mattecam bench``, docs/performance.md) is where speed is judged.
# The guest's waiting windows are long (they end as soon as the frames are in), and the
# checks of the picture itself never loosen.

#: Frames per second mattecam's segmentation reaches in the guest when the host is idle, per
#: scenario: webcam, the fastest 2-s windows of its status line on this machine (typical
#: windows on a lightly loaded host 2.5-3.0); formats, where decoding the H.264 file shares
#: the guest's one CPU, about half the webcam's rate at the same host load (0.7 vs 1.25-1.5).
IDLE_PROCESSED_FPS = {"webcam": 3.0, "formats": 1.5}
#: On-demand camera (0.15): released, and frames again, within this many seconds (design).
ON_DEMAND_S = 2.0
#: Latency through segmentation, p95 (design, ms; measured 0.6-1.0 s).
SEGMENTED_P95_MS = 2000
#: A stop by SIGTERM/SIGINT ends within this many seconds (design; measured 0.3-0.6 s).
STOP_S = 8.0
#: A config file edit shows in the output within this many seconds (design: 0.5 s polling).
CONFIG_EDIT_S = 10.0
#: Longest gap between frames a reader gets after a config edit (design: the clock repeats
#: the last frame after 1.25 intervals; measured 156-331 ms); more if the same reader saw
#: longer gaps just before the edit (see the test).
CONFIG_EDIT_GAP_S = 4 / FPS


def processing_s(*logs: str) -> float | None:
    """Seconds per processed frame in this boot: one over the mean ``processed N fps`` of
    mattecam's status lines (``-v``, every 2 s) while frames came in (windows while it was
    idle, nobody watching, left out); None without any."""
    rates = [
        float(p)
        for log in logs
        for i, p in re.findall(r"in ([\d.]+) fps, processed ([\d.]+) fps", log)
        if float(i) > 0
    ]
    fps = float(np.mean(rates)) if rates else 0.0
    return 1 / fps if fps > 0 else None


def slowdown(scenario: str, *logs: str) -> float:
    """How many times slower than on an idle host mattecam processed frames in this boot of
    ``scenario`` (at least 1): the factor its time bounds are stretched by. A guest that
    keeps up with the input (8 fps), or logs no status line, counts as idle."""
    t = processing_s(*logs)
    return 1.0 if t is None else max(1.0, t * IDLE_PROCESSED_FPS[scenario])


def reader_retries(what: str, info: dict[str, Any]) -> None:
    """Report a reader the guest had to start again because ffmpeg itself crashed."""
    first = info.get("retried")
    if first:
        note = (
            f"{what}: ffmpeg's reader died by signal {-first['rc']} after {first['frames']} "
            f"frames (mattecam kept running); a second reader was used:\n{first['stderr'][-800:]}"
        )
        print(note)
        warnings.warn(note, stacklevel=2)


def _rel(raw: bytes, fmt: str) -> np.ndarray:
    """A raw frame of ``fmt`` as BGR (conversions done here, not by mattecam's code)."""
    a = np.frombuffer(raw, np.uint8)
    codes = {
        "yuyv": cv2.COLOR_YUV2BGR_YUYV,
        "uyvy": cv2.COLOR_YUV2BGR_UYVY,
        "i420": cv2.COLOR_YUV2BGR_I420,
        "nv12": cv2.COLOR_YUV2BGR_NV12,
    }
    if fmt in ("yuyv", "uyvy"):
        return cv2.cvtColor(a.reshape(H, W, 2), codes[fmt])
    if fmt in ("i420", "nv12"):
        return cv2.cvtColor(a.reshape(H * 3 // 2, W), codes[fmt])
    assert fmt == "rgb24", fmt
    return np.ascontiguousarray(a.reshape(H, W, 3)[..., ::-1])


FRAME_BYTES = {"yuyv": W * H * 2, "uyvy": W * H * 2, "i420": W * H * 3 // 2,
               "nv12": W * H * 3 // 2, "rgb24": W * H * 3}  # fmt: skip
FFMPEG_PIX = {"yuyv": "yuyv422", "uyvy": "uyvy422", "i420": "yuv420p", "nv12": "nv12",
              "rgb24": "rgb24"}  # fmt: skip


# --- the clip and its ground truth -----------------------------------------------------------


#: The two clip frames the latency producer switches between (the player far apart).
AB = (10, 45)


@dataclass
class Clip:
    path: Path
    frames: np.ndarray  # N x H x W x 3 BGR, as mattecam decodes the clip
    masks: np.ndarray  # N x H x W bool, True = person
    ab_yuyv: Path  # frames AB[0] and AB[1] as YUYV, for a producer
    ab_bgr: np.ndarray  # the same two frames back as BGR


@pytest.fixture(scope="session")
def clip(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """The tennis clip cut to 192x144 around the player (lossless H.264), with its masks."""
    import av

    src = shared_data / "videos" / "gt" / "tennis"
    if not (src / "tennis.mp4").is_file():
        pytest.skip(f"{src}/tennis.mp4 is absent")
    x0, y0, x1, y1 = CROP
    cap = cv2.VideoCapture(str(src / "tennis.mp4"))
    frames, masks = [], []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        m = cv2.imread(str(src / "masks" / f"{len(frames):05d}.png"), cv2.IMREAD_GRAYSCALE)
        assert m is not None, f"mask {len(frames)} missing"
        frames.append(cv2.resize(img[y0:y1, x0:x1], (W, H), interpolation=cv2.INTER_AREA))
        small = cv2.resize(m[y0:y1, x0:x1], (W, H), interpolation=cv2.INTER_AREA)
        masks.append(small > 127)
    cap.release()
    assert len(frames) >= 30, len(frames)
    out = tmp_path_factory.mktemp("clip") / "tennis-192x144.mp4"
    enc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
         "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-qp", "0",
         "-pix_fmt", "yuv420p", str(out)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert enc.stdin is not None
    for f in frames:
        enc.stdin.write(f.tobytes())
    enc.stdin.close()
    assert enc.wait() == 0
    # What mattecam decodes (PyAV, then OpenCV's BT.601 I420 -> BGR).
    decoded = []
    with av.open(str(out)) as container:
        for vf in container.decode(video=0):
            decoded.append(cv2.cvtColor(vf.to_ndarray(), cv2.COLOR_YUV2BGR_I420))
    assert len(decoded) == len(frames)
    ab = out.with_name("ab.yuyv")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
         "-s", f"{W}x{H}", "-i", "-", "-pix_fmt", "yuyv422", "-f", "rawvideo", str(ab)],
        input=b"".join(decoded[k].tobytes() for k in AB),
        check=True,
    )  # fmt: skip
    ab_bgr = np.stack([_rel(chunk, "yuyv") for chunk in _chunks(ab.read_bytes(), W * H * 2)])
    assert len(ab_bgr) == 2
    return Clip(out, np.stack(decoded), np.stack(masks), ab, ab_bgr)


def _chunks(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


# --- frame checks -----------------------------------------------------------------------------


def is_colour(img: np.ndarray, colour: tuple[int, ...] = COLOUR_BGR) -> np.ndarray:
    d = np.abs(img.astype(np.int16) - np.array(colour, np.int16)).max(axis=2)
    return d < TOLERANCE


def judge(img: np.ndarray, clip: Clip, colour_bgr: tuple[int, ...] = COLOUR_BGR) -> dict[str, Any]:
    """Match ``img`` to its clip frame; measure background and person."""
    assert img.shape == (H, W, 3), img.shape
    kernel = np.ones((3, 3), np.uint8)
    diffs = []
    for k in range(len(clip.frames)):
        core = cv2.erode(clip.masks[k].astype(np.uint8), kernel, iterations=2).astype(bool)
        d = np.abs(img.astype(np.int16) - clip.frames[k].astype(np.int16)).max(axis=2)
        diffs.append(float(np.median(d[core])) if core.any() else 255.0)
    k = int(np.argmin(diffs))
    mask = clip.masks[k].astype(np.uint8)
    near = cv2.dilate(mask, kernel, iterations=3).astype(bool)  # 3 px margin
    core = cv2.erode(mask, kernel, iterations=2).astype(bool)
    colour = is_colour(img, colour_bgr)
    return {
        "frame": k,
        "person_diff": round(diffs[k], 1),  # median |out - clip| on the person, 0..255
        "background_is_colour": round(float(colour[~near].mean()), 4),
        "person_not_colour": round(float(1 - colour[core].mean()), 4),
    }


def check_frames(
    images: list[np.ndarray],
    clip: Clip,
    what: str,
    min_frames: int,
    colour_bgr: tuple[int, ...] = COLOUR_BGR,
) -> None:
    """The composited picture is right: background colour where the truth says background,
    the person (unchanged) where it says person, in at least ``min_frames`` frames."""
    assert len(images) >= min_frames, f"{what}: {len(images)} processed frames, want {min_frames}"
    stats = [judge(img, clip, colour_bgr) for img in images]
    print(f"{what}: {stats}")
    for s in stats:
        assert s["background_is_colour"] >= 0.97, f"{what}: background not {colour_bgr}: {s}"
        assert s["person_not_colour"] >= 0.75, f"{what}: person replaced: {s}"
        assert s["person_diff"] <= 20, f"{what}: person pixels differ from the clip: {s}"


def raw_frames(out: Path, info: dict[str, Any], fmt: str) -> list[np.ndarray]:
    data = (out / info["file"]).read_bytes()
    n = FRAME_BYTES[fmt]
    assert info["frame_bytes"] == n and len(data) % n == 0, (info["frame_bytes"], len(data))
    return [_rel(chunk, fmt) for chunk in _chunks(data, n)]


def ffmpeg_stream(stderr: str) -> tuple[str, int, int]:
    """(pixel format, width, height) of the v4l2 input, as ffmpeg reports it."""
    m = re.search(r"Stream #0:0: Video: rawvideo[^,]*, (\w+)[^,]*, (\d+)x(\d+)", stderr)
    assert m, f"no stream line in ffmpeg's output:\n{stderr}"
    return m.group(1), int(m.group(2)), int(m.group(3))


# --- running a scenario -------------------------------------------------------------------------


@dataclass
class Run:
    version: str
    out: Path
    vm: harness.VMResult
    result: dict[str, Any]

    def report(self) -> str:
        return self.vm.report()


def run_scenario(
    scenario: str,
    version: str,
    tmp: Path,
    clip: Clip,
    cfg: dict[str, Any],
    *,
    timeout: float,
    **kwargs: Any,
) -> Run:
    reason = harness.vm_available(version)
    if reason:
        pytest.skip(reason)
    out = tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    from mattecam.segmentation import models

    config = {
        "out": str(out),
        "clip": str(clip.path),
        "size": [W, H],
        "fps": FPS,
        "colour_arg": COLOUR_ARG,
        "colour_bgr": list(COLOUR_BGR),
        "colour2_arg": COLOUR2_ARG,
        "colour2_bgr": list(COLOUR2_BGR),
        "version": version,
        # How long a reader waits for its frames: it stops as soon as they are in, so this is
        # only the limit for a guest starved by a busy host.
        "collect_s": 90,
        **cfg,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    script = (
        f"exec {shlex.quote(harness.guest_python())} {shlex.quote(str(HERE / 'vcam_guest.py'))}"
        f" {scenario} {shlex.quote(str(out / 'config.json'))}"
    )
    kwargs.setdefault("modprobe_args", MODPROBE)
    t = time.monotonic()
    res = harness.run_in_vm(
        script,
        loopback=version,
        shared_rw=[out, clip.path.parent],
        cwd=ROOT,
        env={"MATTECAM_CACHE_DIR": str(models.cache_dir())},
        timeout=timeout,
        **kwargs,
    )
    TIMINGS[f"{scenario}[{version}]"] = time.monotonic() - t
    print(f"VM {scenario}[{version}]: {res.duration:.1f} s\n{res.output}", file=sys.stderr)
    assert res.returncode == 0, res.report()
    result = json.loads((out / "result.json").read_text())
    return Run(version, out, res, result)


@pytest.fixture(scope="session", autouse=True)
def _print_timings():
    yield
    if TIMINGS:
        lines = [f"  {k}: {v:.1f} s" for k, v in TIMINGS.items()]
        total = sum(TIMINGS.values())
        print("\nVM boots (test_virtual_camera):\n" + "\n".join(lines) + f"\n  total {total:.1f} s")


# --- 1 and 3: formats, consumers, stopping and starting again ------------------------------------

#: One boot per version: each run writes another format and is stopped by another signal;
#: the run after it shows the device was left usable.
FORMAT_RUNS = {
    "0.12.7": [("yuyv", "SIGTERM", False), ("i420", "SIGKILL", True), ("rgb24", "SIGINT", True),
               ("yuyv", "SIGTERM", True)],
    "0.15.0": [("yuyv", "SIGINT", False), ("nv12", "SIGTERM", True), ("rgb24", "SIGKILL", True),
               ("yuyv", "SIGTERM", True)],
}  # fmt: skip


@pytest.fixture(scope="module", params=VERSIONS)
def formats_run(request, vm_ready, clip, tmp_path_factory) -> Run:
    version = request.param
    runs = []
    for i, (fmt, sig, always_on) in enumerate(FORMAT_RUNS[version]):
        last = i == len(FORMAT_RUNS[version]) - 1
        # The last run takes its background from a config file, which is edited while it runs.
        readers = ["ffmpeg", "opencv"] if fmt == "yuyv" else ["ffmpeg"]
        if last:
            readers = ["ffmpeg", "live"]
        if i == 0:
            readers.append("devices")  # `mattecam devices` while mattecam writes
        runs.append({"fmt": fmt, "stop": sig, "always_on": always_on, "readers": readers,
                     "want": 2 if last else 3, "config": last,
                     "output": "auto" if last else "/dev/video10"})  # fmt: skip
    return run_scenario(
        "formats",
        version,
        tmp_path_factory.mktemp(f"formats-{version}"),
        clip,
        # baseline_s: the live reader reads this long before the config edit (see the test)
        {"runs": runs, "baseline_s": 4},
        vivid=True,
        timeout=600,
    )


def test_devices_lists_virtual_and_real_cameras(formats_run: Run) -> None:
    """``mattecam devices`` shows /dev/video10 labelled mattecam (idle) and vivid's formats."""
    d = formats_run.result["devices"]
    text = d["stdout"]
    assert d["rc"] == 0, d
    assert re.search(r"/dev/video10: 'mattecam' \(idle: ready for mattecam\)", text), text
    cams = text.split("Virtual cameras")[0]
    m = re.search(r"(/dev/video\d+): (vivid\S*) \(vivid, capture\)", cams)
    assert m, f"vivid camera not listed:\n{text}"
    yuyv = re.search(r"^\s+YUYV: (.+)$", cams, re.M)
    assert yuyv and "640x360@" in yuyv.group(1) and "1280x720@" in yuyv.group(1), text
    assert "/dev/video10" not in cams, f"the loopback is listed as a camera:\n{text}"
    assert re.search(r"/dev/video11: 'fakecam' \(idle: ready for mattecam\)", text), text
    busy = formats_run.result["devices_busy"]["stdout"]
    assert re.search(r"/dev/video10: 'mattecam' \(in use: another program is writing", busy), busy
    if formats_run.version.startswith("0.15"):
        assert "version=0.15" in text and "exclusive_caps=Y,Y" in text, text


def test_file_to_virtual_camera_formats(formats_run: Run, clip: Clip) -> None:
    """Issue 3, item 1: a file into the loopback in each format, read back by ffmpeg (and
    OpenCV for YUYV): the format and size are the chosen ones, the picture is right."""
    for i, run in enumerate(formats_run.result["runs"]):
        fmt = run["fmt"]
        what = f"{formats_run.version} run{i} {fmt}"
        assert run["capture_after_s"] is not None, f"{what}: device never offered capture\n" + (
            run.get("log", "")
        )
        ff = run["ffmpeg"]
        reader_retries(what, ff)
        pix, w, h = ffmpeg_stream(ff["stderr"])
        assert (pix, w, h) == (FFMPEG_PIX[fmt], W, H), f"{what}: ffmpeg saw {pix} {w}x{h}"
        want = 2 if i == len(formats_run.result["runs"]) - 1 else 3
        check_frames(raw_frames(formats_run.out, ff, fmt), clip, f"{what} ffmpeg", want)
        if "opencv" in run:
            cvr = run["opencv"]
            assert cvr["opened"], f"{what}: OpenCV could not open the device: {cvr}"
            assert (cvr["width"], cvr["height"]) == (W, H), f"{what}: OpenCV: {cvr}"
            assert cvr["fourcc"] == "YUYV", f"{what}: OpenCV: {cvr}"
            images = list(np.load(formats_run.out / cvr["file"])) if cvr.get("file") else []
            check_frames(images, clip, f"{what} opencv", 3)


# A clean stop by signal N exits 128 + N (after finishing); SIGKILL cannot be caught.
SIGNAL_RC = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -9}


def test_output_auto_picks_the_loopback(formats_run: Run) -> None:
    """``-o auto`` (the last run) finds /dev/video10, the first v4l2loopback device."""
    last = formats_run.result["runs"][-1]
    assert "/dev/video10 (mattecam" in last["log"], last["log"]
    assert last["capture_after_s"] is not None, last["log"]


def test_stop_signals_then_start_again(formats_run: Run) -> None:
    """Issue 3, item 3: SIGTERM, SIGINT (Ctrl-C) and SIGKILL stop mattecam; the device
    goes back to idle and the next run in the same boot works (checked by the format test
    for every run after the first)."""
    runs = formats_run.result["runs"]
    for i, run in enumerate(runs):
        what = f"{formats_run.version} run{i} ({run['fmt']}, {run['stop']['signal']})"
        stop = run["stop"]
        assert not stop["hung"], f"{what}: did not exit within 30 s\n{run['log']}"
        assert stop["rc"] == SIGNAL_RC[stop["signal"]], f"{what}: exit {stop['rc']}\n{run['log']}"
        if stop["signal"] != "SIGKILL":
            bound = STOP_S * slowdown("formats", run["log"])
            assert stop["seconds"] < bound, (
                f"{what}: took {stop['seconds']:.1f} s to stop (bound {bound:.1f} s)"
            )
            assert "virtual camera /dev/video10 released" in run["log"], run["log"]
            assert "Traceback" not in run["log"], run["log"]
        assert run["idle_after_stop_s"] is not None, f"{what}: device not idle after the stop"
        if i + 1 < len(runs):
            nxt = runs[i + 1]
            assert nxt["idle_before"], f"{what}: device not idle before the next run"
            assert nxt["capture_after_s"] is not None, f"{what}: next run never started"
            assert "error" not in nxt["log"].lower(), nxt["log"]
    assert {r["stop"]["signal"] for r in runs} >= {"SIGTERM", "SIGINT", "SIGKILL"}


def test_config_edit_applies_live_to_the_virtual_camera(formats_run: Run, clip: Clip) -> None:
    """Live control on the real device: the last run takes its background from a config
    file; rewriting the file switches the colour a reader sees, while the device stays open
    (opened once, frames keep flowing through the change)."""
    last = formats_run.result["runs"][-1]
    what = f"{formats_run.version} live config edit"
    lv = last["live"]
    images = raw_frames(formats_run.out, lv, "yuyv")
    before, after = images[: lv["n_before"]], images[lv["n_before"] :]
    check_frames(before, clip, f"{what}, before", 2)
    check_frames(after, clip, f"{what}, after", 2, COLOUR2_BGR)
    k = slowdown("formats", last["log"])
    assert lv["after_change_s"] is not None, lv
    assert lv["after_change_s"] < CONFIG_EDIT_S * k, f"slowdown {k:.2f}: {lv}"
    # Opened once ("virtual camera /dev/video10 (mattecam, v4l2loopback ...)"), released once.
    assert last["log"].count("virtual camera /dev/video10 (mattecam") == 1, last["log"]
    assert last["log"].count("virtual camera /dev/video10 released") == 1, last["log"]
    assert "background changed" in last["log"], last["log"]
    # The reader never went without frames across the change. Calibrated by the same reader
    # in the seconds before the edit (how steadily frames come in this guest right now):
    # from the edit to the end it gets at least half as many frames per second, and no gap
    # longer than twice the longest one before (the host's scheduling) or CONFIG_EDIT_GAP_S
    # times the slowdown (the guest's own work on the edit), whichever is longer.
    all_times = np.array(lv["all_times"])
    cfg_baseline = round(lv["t_change"] - lv["t_baseline"], 1)
    base = all_times[(all_times >= lv["t_baseline"]) & (all_times <= lv["t_change"])]
    assert len(base) >= 5, f"{what}: {len(base)} frames in the {cfg_baseline} s before the edit"
    times = all_times[(all_times >= base[-1]) & (all_times <= lv["t_end"])]  # from the last one
    assert len(times) >= 3, f"{what}: {len(times)} frames after the edit: {lv}"
    span_base, span = base[-1] - base[0], lv["t_end"] - base[-1]
    rate_base, rate = (len(base) - 1) / span_base, (len(times) - 1) / span
    base_gap = float(np.diff(base).max())
    gap = float(np.diff(times).max())
    gap_bound = max(CONFIG_EDIT_GAP_S * k, 2 * base_gap)
    line = (
        f"{what}: before the edit {len(base)} frames in {span_base:.1f} s ({rate_base:.1f}/s, "
        f"longest gap {base_gap * 1e3:.0f} ms); after it {len(times)} in {span:.1f} s "
        f"({rate:.1f}/s, longest gap {gap * 1e3:.0f} ms; bound {gap_bound * 1e3:.0f} ms, "
        f"slowdown {k:.2f})"
    )
    print(line)
    assert rate >= rate_base / 2, line
    assert gap < gap_bound, line


# --- 2, 5, 6: a fake webcam, on-demand, latency ---------------------------------------------------


@pytest.fixture(scope="module", params=VERSIONS)
def webcam_run(request, vm_ready, clip, tmp_path_factory) -> Run:
    version = request.param
    return run_scenario(
        "webcam",
        version,
        tmp_path_factory.mktemp(f"webcam-{version}"),
        clip,
        {
            "want": 3,
            "idle_watch": 4.0,
            "latency_max_s": 60,
            "latency_samples": 25,
            "ab_frames": str(clip.ab_yuyv),
            # at least 2 s between switches, longer when segmentation runs slower (see
            # vcam_guest.py: five processing times); `switches` periods, at most 150 s.
            "switch_every": 2.0,
            "switches": 10,
            "segmented_max_s": 150,
        },
        timeout=600,
    )


def test_fake_webcam_to_virtual_camera(webcam_run: Run, clip: Clip) -> None:
    """Issue 3, item 2: a second loopback fed by ffmpeg acts as the webcam; mattecam reads it
    (OpenCV, V4L2) and writes /dev/video10, read back by ffmpeg."""
    wc = webcam_run.result["webcam"]
    assert wc["camera_ready_s"] is not None, "the fake webcam never offered capture"
    assert wc["timeline"]["camera_opened"] is not None, f"mattecam never opened the camera: {wc}"
    assert wc["timeline"]["vcam_ready"] is not None, wc["log"]
    rd = wc["reader"]
    reader_retries(f"{webcam_run.version} webcam", rd)
    pix, w, h = ffmpeg_stream(rd["stderr"])
    assert (pix, w, h) == ("yuyv422", W, H), (pix, w, h)
    check_frames(raw_frames(webcam_run.out, rd, "yuyv"), clip, f"{webcam_run.version} webcam", 3)
    assert wc["stop"]["rc"] == SIGNAL_RC["SIGTERM"], wc["log"]


def test_on_demand_camera(webcam_run: Run) -> None:
    """Issue 3, item 5: with 0.15 the camera is released within 2 s when nobody reads the
    virtual camera and gives frames within 2 s of the driver's event when someone does
    (2 s on an idle host; stretched by the boot's slowdown); with 0.12 (no events) it stays
    open."""
    wc = webcam_run.result["webcam"]
    tl = wc["timeline"]
    k = slowdown("webcam", webcam_run.result["latency_segmented"]["log"], wc["log"])
    bound = ON_DEMAND_S * k
    summary = (
        f"{webcam_run.version}: released {tl['camera_released']} s after start "
        f"(virtual camera ready at {tl['vcam_ready']} s); reader -> event "
        f"{wc['event_1_after_reader_s']} s; event -> camera open "
        f"{wc['camera_reopened_after_event_s']} s, -> first frame "
        f"{wc['first_frame_after_event_s']} s; reader -> first frame "
        f"{wc['first_frame_after_reader_s']} s; reader stop -> event "
        f"{wc['event_0_after_reader_stop_s']} s, -> released {wc['released_after_reader_stop_s']} s"
        f"; bound {bound:.2f} s (slowdown {k:.2f})"
    )
    print(summary)
    if not webcam_run.version.startswith("0.15"):
        assert not wc["events_supported"], summary
        assert tl["camera_released"] is None and wc["held_without_reader"], summary
        assert wc["released_after_reader_stop_s"] is None, summary
        assert "cannot tell whether anyone watches" in wc["log"], wc["log"]
        return
    assert wc["events_supported"], summary
    assert tl["camera_released"] is not None, f"camera never released: {summary}\n{wc['log']}"
    assert tl["camera_released"] - tl["vcam_ready"] <= bound, summary
    assert wc["event_1_after_reader_s"] is not None, f"no client-usage event: {wc['events']}"
    assert wc["first_frame_after_event_s"] is not None, summary
    assert wc["first_frame_after_event_s"] <= bound, summary
    assert wc["event_0_after_reader_stop_s"] is not None, f"no event: {wc['events']}"
    assert wc["released_after_reader_stop_s"] is not None, summary
    assert wc["released_after_reader_stop_s"] - wc["event_0_after_reader_stop_s"] <= bound, summary
    assert "nobody is watching" in wc["log"] and "opened again" in wc["log"], wc["log"]


def report_latency(label: str, ms: np.ndarray, log: str, extra: str = "") -> tuple[str, float]:
    """Print the distribution of ``ms`` and mattecam's own latency lines from ``log``;
    returns the summary line (for assert messages) and the p95."""
    p50, p95 = np.percentile(ms, [50, 95])
    line = (
        f"{label} (VM, TCG): n={len(ms)} p50={p50:.0f} ms p95={p95:.0f} ms "
        f"min={ms.min():.0f} max={ms.max():.0f}{extra}"
    )
    print(line)
    m = re.findall(r"latency p50 ([\d.]+) ms p95 ([\d.]+) ms", log)
    print(f"mattecam's own capture->write latency lines: {m[-3:]}")
    return line, float(p95)


def test_latency(webcam_run: Run) -> None:
    """Issue 3, item 6: a producer writes its clock into the fake webcam's pixels; the
    reader of /dev/video10 (same guest clock) decodes it: capture-to-consumer latency."""
    lat = webcam_run.result["latency"]
    reader_retries(f"{webcam_run.version} latency", lat["reader"])
    ms = np.array(lat["latency_ms"], float)
    assert not lat["producer_error"], lat["producer_error"]
    assert len(ms) >= 10, (
        f"{len(ms)} timestamps read back ({lat['frames_read']} frames, "
        f"{lat['unreadable']} unreadable)\n{lat['log']}"
    )
    line, p95 = report_latency(f"latency {webcam_run.version}", ms, lat["log"])
    assert (ms > 0).all(), line
    # Loose bound: the guest is 50-100x slower than real hardware; this catches queueing
    # (latency growing with every frame), not the speed of the emulator.
    assert p95 < 3000, line
    assert ms[-5:].mean() < ms[:5].mean() + 1000, f"latency grows: {ms.tolist()}"


def test_latency_with_segmentation(webcam_run: Run, clip: Clip) -> None:
    """Issue 3, item 6, the whole path: the fake webcam switches between two clip frames
    every 2 s (longer when the guest processes slower: five processing times); the first
    frame read back from /dev/video10 that shows the new one gives a sample (segmentation,
    refinement, compositing and both loopbacks included)."""
    seg = webcam_run.result["latency_segmented"]
    rd = seg["reader"]
    reader_retries(f"{webcam_run.version} segmented", rd)
    images = raw_frames(webcam_run.out, rd, "yuyv")
    kernel = np.ones((3, 3), np.uint8)
    cores = [
        cv2.erode(clip.masks[k].astype(np.uint8), kernel, iterations=2).astype(bool) for k in AB
    ]
    seen: list[tuple[float, int]] = []
    for t, img in zip(rd["times"], images, strict=True):
        if is_colour(img).mean() < 0.3:
            continue  # the placeholder
        d = [
            float(np.median(np.abs(img.astype(np.int16) - ref.astype(np.int16)).max(2)[core]))
            for ref, core in zip(clip.ab_bgr, cores, strict=True)
        ]
        which = int(np.argmin(d))
        assert d[which] <= 20 and d[1 - which] > d[which] + 10, f"neither A nor B: {d}"
        seen.append((t, which))
    switches = seg["switches"]
    samples, late = [], 0
    for j in range(1, len(switches)):
        t_s, which = switches[j]
        last = j + 1 == len(switches)
        t_next = rd["t_stop"] if last else switches[j + 1][0]
        before = [w for t, w in seen if t <= t_s]
        if not before or before[-1] == which:
            continue  # nothing shown yet (start, or idle until the reader came)
        after = [t for t, w in seen if t > t_s and w == which]
        if not after or after[0] >= t_next:
            if not last:  # the reader stopped less than a period after the last switch
                late += 1
            continue
        samples.append((after[0] - t_s) * 1000)
    ms = np.array(samples)
    assert len(ms) >= 5, f"{len(ms)} samples ({late} late) from {len(seen)} frames\n{seg['log']}"
    # Newest-wins keeps the latency near two processing times (the frame in progress, then
    # the new one) plus the devices' and readers' share: up to ~3 processing times in the
    # guest (~1 s at 3 fps). The bound is the design figure (6 processing times on an idle
    # host) stretched by the boot's slowdown. A queue instead of a slot grows without bound
    # (input 8 fps, processing ~3 fps).
    # The time bounds read mattecam's -v status line; a change of its wording must show here.
    assert processing_s(seg["log"]) is not None, f"no 'in N fps, processed N fps':\n{seg['log']}"
    k = slowdown("webcam", seg["log"])
    bound = SEGMENTED_P95_MS * k
    line, p95 = report_latency(
        f"latency with segmentation {webcam_run.version}",
        ms,
        seg["log"],
        f" late={late}; slowdown {k:.2f}, p95 bound {bound:.0f} ms; switching {seg['calibration']}",
    )
    assert late <= max(1, (len(ms) + late) // 5), line
    assert p95 < bound, line


# --- 4: errors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=VERSIONS)
def errors_run(request, vm_ready, clip, tmp_path_factory) -> Run:
    version = request.param
    return run_scenario(
        "errors",
        version,
        tmp_path_factory.mktemp(f"errors-{version}"),
        clip,
        {
            "modprobe": [
                "devices=1",
                "video_nr=10",
                "exclusive_caps=1",
                "card_label=mattecam",
                "max_width=320",
                "max_height=240",
            ],
            "too_big": [640, 480],
        },
        modprobe_args=None,
        vivid=True,
        timeout=480,
    )


def _error(res: dict[str, Any], *needles: str) -> str:
    msg = res["stderr"]
    assert res["rc"] not in (0, None), f"exit {res['rc']}: {msg}"
    assert "Traceback" not in msg, msg
    lines = [ln for ln in msg.splitlines() if ln.startswith("mattecam: error:")]
    assert len(lines) == 1, f"want one error paragraph:\n{msg}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in: {lines[0]}"
    return lines[0]


def test_error_no_module(errors_run: Run) -> None:
    """No v4l2loopback loaded: the message names the modprobe line; devices says so."""
    e = errors_run.result["errors"]
    _error(e["no_module"], "/dev/video10 does not exist", "modprobe v4l2loopback")
    _error(e["no_module_auto"], "no v4l2loopback device found", "modprobe v4l2loopback")
    d = errors_run.result["devices_no_module"]
    assert d["rc"] == 0 and "none found" in d["stdout"] and "modprobe" in d["stdout"], d


def test_error_capture_only_device(errors_run: Run) -> None:
    """A real camera (vivid) as output: refused with the reason; the camera still works."""
    e = errors_run.result["errors"]
    _error(e["capture_only"], "not a v4l2loopback virtual camera", errors_run.result["vivid"])
    assert e["vivid_usable_after"]["rc"] == 0, e["vivid_usable_after"]


def test_error_unsupported_format(errors_run: Run, clip: Clip) -> None:
    """A size the driver clamps (max_width=320) and a format it substitutes (keep_format)
    are refused with the reason; the device is usable afterwards."""
    e = errors_run.result["errors"]
    assert errors_run.result["modprobe"]["rc"] == 0, errors_run.result["modprobe"]
    _error(e["too_big"], "YUYV 640x480", "YUYV 320x240", "--width 320 --height 240", "max_width")
    assert e["idle_after_too_big"], "device not idle after the refused size"
    assert e["pinned"]["rc"] == 0 and e["pinned"]["producer_written"] > 0, e["pinned"]
    _error(
        e["substituted"], "YUYV 320x240", "keep_format", "v4l2-ctl -d /dev/video10 -c keep_format=0"
    )
    assert e["unpinned"]["rc"] == 0, e["unpinned"]
    ok = e["usable_after"]
    assert ok["capture_after_s"] is not None, ok["log"]
    reader_retries(f"{errors_run.version} after errors", ok["reader"])
    frames = raw_frames(errors_run.out, ok["reader"], "yuyv")
    check_frames(frames, clip, f"{errors_run.version} after errors", 2)
    assert ok["stop"]["rc"] == SIGNAL_RC["SIGTERM"], ok["log"]


def test_error_device_stuck_by_write_only_producer(errors_run: Run) -> None:
    """After a producer that never streamed (ffmpeg) closes, v4l2loopback 0.12 offers
    neither output nor capture until reloaded: mattecam says so and gives the reload
    commands, which work. 0.15 stays usable."""
    st = errors_run.result["errors"]["write_only_producer"]
    assert st["ffmpeg"]["rc"] == 0, st["ffmpeg"]
    caps = st["caps_after"]
    if not errors_run.version.startswith("0.12"):
        assert caps & 0x2 and not caps & 0x1, f"0.15 not idle after ffmpeg: caps {caps:#x}"
        return
    assert not caps & 0x3, f"0.12 no longer gets stuck? caps {caps:#x}"
    _error(st["mattecam"], "neither output nor capture", "sudo modprobe -r v4l2loopback")
    assert all(r["rc"] == 0 for r in st["reload"]), st["reload"]
    assert st["idle_after_reload"], "device not usable after the reload the message gives"


# --- 7: a browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=VERSIONS)
def browser_run(request, vm_ready, clip, tmp_path_factory) -> Run:
    version = request.param
    if not any(Path(p).exists() for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")):
        pytest.skip("chromium is not installed (tests/vm/build.sh installs it)")
    tmp = tmp_path_factory.mktemp(f"browser-{version}")
    return run_scenario(
        "browser",
        version,
        tmp,
        clip,
        {
            "fmt": "yuyv",
            "page": str(HERE / "vcam_page.html"),
            "query": f"label=mattecam&colour={','.join(map(str, COLOUR_RGB))}&timeout=360",
            "browser_timeout": 380,
        },
        timeout=600,
    )


def test_browser_shows_virtual_camera(browser_run: Run, clip: Clip) -> None:
    """Issue 3, item 7: headless Chromium lists the device by its label, opens it with
    getUserMedia and draws the person over the chosen background."""
    br = browser_run.result["browser"]
    console = br["console"]
    text = "\n".join(c[:300] for c in console)
    assert any(c.startswith("MATTECAM-FOUND") and '"mattecam"' in c for c in console), text
    opened = next((c for c in console if c.startswith("MATTECAM-OPENED")), None)
    assert opened and f'"width":{W}' in opened and f'"height":{H}' in opened, text
    assert not any(c.startswith("MATTECAM-ERROR") for c in console), text
    images = []
    for c in console:
        if c.startswith("MATTECAM-PIXELS"):
            _, _, w, h, b64 = c.split(" ", 4)
            rgb = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(int(h), int(w), 3)
            images.append(np.ascontiguousarray(rgb[..., ::-1]))
    print(f"chromium: {br['seconds']:.1f} s; {text[:2000]}")
    check_frames(images, clip, f"{browser_run.version} chromium", 2)
    assert br["stop"]["rc"] == SIGNAL_RC["SIGTERM"], br["log"]
