"""The PipeWire camera (``-o pipewire``) in a private PipeWire session, read by pipewiresrc."""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import write_clip
from mattecam.specs import OutputSpec

MATTECAM = [sys.executable, "-m", "mattecam"]
TOOLS = ("pipewire", "wireplumber", "dbus-daemon", "gst-launch-1.0", "pw-dump")
NODE = "mattecamtest"
SIZE = (320, 240)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this module started (and its group), waiting a bounded time."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def pw_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private D-Bus session, PipeWire and WirePlumber, all state under a temp dir; the
    environment that reaches them."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if ctypes.util.find_library("pipewire-0.3") is None:
        missing.append("libpipewire-0.3")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (bash scripts/setup.sh --dev)")
    root = tmp_path_factory.mktemp("pw")
    run = root / "run"
    for d in ("run", "data", "state", "config"):
        (root / d).mkdir(mode=0o700)
    env = dict(os.environ)
    env.update(
        XDG_RUNTIME_DIR=str(run),
        PIPEWIRE_RUNTIME_DIR=str(run),
        DBUS_SESSION_BUS_ADDRESS=f"unix:path={run / 'bus'}",
        XDG_DATA_HOME=str(root / "data"),
        XDG_STATE_HOME=str(root / "state"),
        XDG_CONFIG_HOME=str(root / "config"),
    )
    env.pop("PIPEWIRE_REMOTE", None)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*cmd: str) -> None:
        log = (root / f"{cmd[0]}.log").open("wb")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True))

    def wait_for(path: Path, what: str) -> None:
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = {p.name: p.read_text()[-500:] for p in root.glob("*.log")}
                pytest.fail(f"{what} did not start: {logs}")
            time.sleep(0.05)

    try:
        start(
            "dbus-daemon", "--session", f"--address={env['DBUS_SESSION_BUS_ADDRESS']}", "--nofork"
        )
        wait_for(run / "bus", "dbus-daemon")
        start("pipewire")
        wait_for(run / "pipewire-0", "pipewire")
        start("wireplumber")
        yield env
    finally:
        for p in reversed(procs):
            _stop(p)


def _nodes(env: dict[str, str]) -> list[dict[str, object]]:
    out = subprocess.run(["pw-dump"], env=env, capture_output=True, timeout=10, check=True)
    return [
        o
        for o in json.loads(out.stdout)
        if o.get("type") == "PipeWire:Interface:Node"
        and o.get("info", {}).get("props", {}).get("node.name") == NODE
    ]


def _wait_node(env: dict[str, str], present: bool, timeout: float = 10) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = _nodes(env)
        if bool(nodes) == present or time.monotonic() > deadline:
            return nodes
        time.sleep(0.2)


def test_spec_round_trip() -> None:
    assert OutputSpec.parse("pipewire") == OutputSpec("pipewire")
    assert OutputSpec.parse("pipewire:cam_1") == OutputSpec("pipewire", "cam_1")
    assert str(OutputSpec("pipewire")) == "pipewire"
    assert str(OutputSpec("pipewire", "cam_1")) == "pipewire:cam_1"
    assert OutputSpec("pipewire").path is None  # check_outputs has nothing to compare


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    if ctypes.util.find_library("pipewire-0.3") is None:
        pytest.skip("libpipewire-0.3 is not installed")
    clip = write_clip(tmp_path / "clip.mp4", n=4)
    empty = tmp_path / "run"
    empty.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(empty), PIPEWIRE_RUNTIME_DIR=str(empty))
    env.pop("PIPEWIRE_REMOTE", None)
    r = subprocess.run(
        [*MATTECAM, "-i", str(clip), "-o", "pipewire", "-b", "green"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "Is PipeWire running?" in r.stderr and "systemctl --user" in r.stderr


def test_no_daemon_is_reported_before_the_camera_opens(tmp_path: Path) -> None:
    """The pre-flight check runs before the source: a camera that does not exist would
    otherwise be the first (and misleading) error."""
    if ctypes.util.find_library("pipewire-0.3") is None:
        pytest.skip("libpipewire-0.3 is not installed")
    assert not Path("/dev/video77").exists()
    empty = tmp_path / "run"
    empty.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(empty), PIPEWIRE_RUNTIME_DIR=str(empty))
    env.pop("PIPEWIRE_REMOTE", None)
    r = subprocess.run(
        [*MATTECAM, "-i", "/dev/video77", "-o", "pipewire", "-b", "green"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"no PipeWire socket at {empty / 'pipewire-0'}" in r.stderr
    assert "Is PipeWire running?" in r.stderr and "systemctl --user" in r.stderr
    assert "video77" not in r.stderr, r.stderr


def test_socket_paths_follow_libpipewire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mattecam.sinks import pipewire

    for var in ("PIPEWIRE_REMOTE", "PIPEWIRE_RUNTIME_DIR", "XDG_RUNTIME_DIR", "USERPROFILE"):
        monkeypatch.delenv(var, raising=False)
    assert pipewire.socket_paths() == [Path("/run/pipewire/pipewire-0")]
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert pipewire.socket_paths() == [Path("/run/user/1000/pipewire-0")]
    monkeypatch.setenv("PIPEWIRE_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("PIPEWIRE_REMOTE", "pipewire-1, /abs/sock")
    assert pipewire.socket_paths() == [tmp_path / "pipewire-1", Path("/abs/sock")]
    monkeypatch.delenv("PIPEWIRE_REMOTE")
    assert pipewire.daemon_problem() == f"no PipeWire socket at {tmp_path / 'pipewire-0'}"
    # A socket file left by a daemon that died refuses connections.
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "pipewire-0"))
    problem = pipewire.daemon_problem()
    assert problem is not None and "does not answer" in problem
    with socket.socket(socket.AF_UNIX) as s:  # one that listens answers
        (tmp_path / "pipewire-0").unlink()
        s.bind(str(tmp_path / "pipewire-0"))
        s.listen(1)
        assert pipewire.daemon_problem() is None


def test_parse_pw_dump_keeps_video_sources() -> None:
    from mattecam.devices import PipeWireCamera, parse_pw_dump

    def node(id_: int, **props: str) -> dict[str, object]:
        return {"id": id_, "type": "PipeWire:Interface:Node", "info": {"props": props}}

    objects = [
        {"id": 0, "type": "PipeWire:Interface:Core", "info": {}},
        node(50, **{"media.class": "Video/Source", "node.name": "v4l2_input.usb"}),
        node(40, **{"media.class": "Audio/Sink", "node.name": "speakers"}),
        node(
            45,
            **{
                "media.class": "Video/Source",
                "node.name": "mattecam",
                "node.description": "mattecam",
                "media.role": "Camera",
            },
        ),
        "garbage",
    ]
    assert parse_pw_dump(objects) == [
        PipeWireCamera(45, "mattecam", "mattecam", "Camera"),
        PipeWireCamera(50, "v4l2_input.usb", "", ""),
    ]


def test_devices_without_a_daemon_says_so(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), PIPEWIRE_RUNTIME_DIR=str(tmp_path))
    env.pop("PIPEWIRE_REMOTE", None)
    r = subprocess.run(
        [*MATTECAM, "devices"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = lines.index("PipeWire cameras:")
    assert lines[i + 1].startswith(f"  No PipeWire socket at {tmp_path / 'pipewire-0'}.")
    assert "Is PipeWire running?" in lines[i + 1]


@pytest.fixture
def published(pw_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """mattecam's camera node, published from this process into the private session."""
    from mattecam.sinks.pipewire import PipeWireSink

    for key in ("XDG_RUNTIME_DIR", "PIPEWIRE_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, pw_env[key])
    monkeypatch.delenv("PIPEWIRE_REMOTE", raising=False)
    sink = PipeWireSink(NODE, "mattecam test")
    sink.check()
    sink.open(SIZE, 30)
    try:
        assert _wait_node(pw_env, present=True)
        yield
    finally:
        sink.close()


def test_devices_lists_the_pipewire_camera(pw_env: dict[str, str], published: None) -> None:
    r = subprocess.run(
        [*MATTECAM, "devices"], env=pw_env, capture_output=True, text=True, timeout=60, check=True
    )
    lines = r.stdout.splitlines()
    i = lines.index("PipeWire cameras:")
    ours = [line for line in lines[i + 1 :] if line.startswith(f"  {NODE}: ")]
    assert len(ours) == 1, r.stdout
    assert "'mattecam test'" in ours[0] and "role Camera" in ours[0], ours


def test_doctor_sees_pipewire(pw_env: dict[str, str]) -> None:
    r = subprocess.run(
        [*MATTECAM, "doctor"], env=pw_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "ok    PipeWire: libpipewire-0.3 is installed" in r.stdout
    assert "ok    PipeWire: the daemon is running" in r.stdout
    assert "chrome://flags/#enable-webrtc-pipewire-camera" in r.stdout
    assert "media.webrtc.camera.allow-pipewire" in r.stdout
    assert not any(
        line.startswith(("FAIL", "WARN")) and "PipeWire" in line for line in r.stdout.splitlines()
    )


@pytest.mark.slow
def test_camera_node_streams_the_composite(
    pw_env: dict[str, str], tmp_path: Path, model_cache: Path
) -> None:
    w, h = SIZE
    clip = write_clip(tmp_path / "clip.mp4", n=30, size=SIZE, fps=30)
    log = (tmp_path / "mattecam.log").open("w")
    proc = subprocess.Popen(
        [*MATTECAM, "-i", str(clip), "--loop", "-o", f"pipewire:{NODE}", "-b", "#3366ff", "-v"],
        env=pw_env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        nodes = _wait_node(pw_env, present=True)
        assert nodes, (tmp_path / "mattecam.log").read_text()
        info = nodes[0]["info"]
        assert isinstance(info, dict)
        props = info["props"]
        assert props["media.class"] == "Video/Source"
        assert props["media.role"] == "Camera"
        assert props["node.description"] == "mattecam"
        (fmt,) = info["params"]["EnumFormat"]
        assert fmt["size"] == {"width": w, "height": h}
        assert set(fmt["format"].values()) == {"I420", "NV12", "YUY2"}

        for fourcc in ("I420", "YUY2"):  # the default, and one the consumer asks for
            n = 45
            out = tmp_path / f"{fourcc}.bgr"
            t0 = time.monotonic()
            subprocess.run(
                [
                    "gst-launch-1.0", "-q", "pipewiresrc", f"target-object={NODE}",
                    f"num-buffers={n}", "!", f"video/x-raw,format={fourcc}", "!", "videoconvert",
                    "!", "video/x-raw,format=BGR", "!", "filesink", f"location={out}",
                ],
                env=pw_env,
                capture_output=True,
                timeout=30,
                check=True,
            )  # fmt: skip
            elapsed = time.monotonic() - t0
            frames = np.fromfile(out, np.uint8)
            assert frames.size == n * w * h * 3, (fourcc, frames.size)
            frames = frames.reshape(n, h, w, 3)
            # Bottom right: grey clip background, far from the square: the chosen colour
            # (BGR), once the placeholder shown while nobody watched has been replaced.
            region = frames[:, h * 2 // 3 :, w * 3 // 4 :].reshape(n, -1, 3).astype(int)
            off = np.abs(np.median(region, axis=1) - (255, 102, 51)).max(axis=1)
            assert (off[-30:] <= 12).all(), (fourcc, off)
            assert n / elapsed > 10, (fourcc, elapsed)
            print(
                f"{fourcc}: {n} frames in {elapsed:.2f} s, colour off by {off[-30:].max()}"
            )  # 30 fps output, plus process start-up

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143, (tmp_path / "mattecam.log").read_text()
        assert not _wait_node(pw_env, present=False)
        text = (tmp_path / "mattecam.log").read_text()
        assert "Traceback" not in text
        assert "someone started watching the output" in text  # viewers: on-demand resumes
    finally:
        _stop(proc)
        log.close()
