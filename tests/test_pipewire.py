"""The PipeWire camera (``-o pipewire``) in a private PipeWire session, read by pipewiresrc."""

from __future__ import annotations

import ctypes.util
import json
import os
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
from pwsession import PipeWireSession, pw_env, pw_session, stop

__all__ = ["pw_env", "pw_session"]  # fixtures, used by name

MATTECAM = [sys.executable, "-m", "mattecam"]
NODE = "mattecamtest"
SIZE = (320, 240)


def test_spec_round_trip() -> None:
    assert OutputSpec.parse("pipewire") == OutputSpec("pipewire")
    assert OutputSpec.parse("pipewire:cam_1") == OutputSpec("pipewire", "cam_1")
    assert str(OutputSpec("pipewire")) == "pipewire"
    assert str(OutputSpec("pipewire", "cam_1")) == "pipewire:cam_1"
    assert OutputSpec("pipewire").path is None  # check_outputs has nothing to compare


def test_spec_sets_the_description() -> None:
    from mattecam.errors import ConfigError
    from mattecam.sinks import PipeWireSink, make_sink

    for text, spec in [
        ("pipewire:cam:Office camera", OutputSpec("pipewire", "cam", "Office camera")),
        ("pipewire::Office: cam 2", OutputSpec("pipewire", "", "Office: cam 2")),
    ]:
        assert OutputSpec.parse(text) == spec
        assert OutputSpec.parse(str(spec)) == spec
    sink = make_sink("pipewire::Office camera")
    assert isinstance(sink, PipeWireSink)
    assert (sink.node_name, sink.description) == ("mattecam", "Office camera")
    sink = make_sink("pipewire:cam_1")
    assert isinstance(sink, PipeWireSink)
    assert (sink.node_name, sink.description) == ("cam_1", "mattecam")  # the default
    for bad, says in [
        ("pipewire:", "node name"),
        ("pipewire:a b", "node name"),
        ("pipewire:cam:", "description"),
        ("pipewire:cam:" + "x" * 101, "description"),
        ("pipewire:cam:tab\there", "description"),
    ]:
        with pytest.raises(ConfigError, match=says):
            OutputSpec.parse(bad)


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
def published(pw_session: PipeWireSession, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """mattecam's camera node, published from this process into the private session."""
    from mattecam.sinks.pipewire import PipeWireSink

    pw_session.apply(monkeypatch)
    sink = PipeWireSink(NODE, "mattecam test")
    sink.check()
    sink.open(SIZE, 30)
    try:
        assert pw_session.wait_node(NODE)
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
    pw_session: PipeWireSession, pw_env: dict[str, str], tmp_path: Path, model_cache: Path
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
        nodes = pw_session.wait_node(NODE)
        assert nodes, (tmp_path / "mattecam.log").read_text()
        info = nodes[0]["info"]
        assert isinstance(info, dict)
        props = info["props"]
        assert props["media.class"] == "Video/Source"
        assert props["media.role"] == "Camera"
        assert props["node.description"] == "mattecam"
        # One EnumFormat per pixel format, each naming one: libwebrtc (Chromium, Firefox)
        # ignores a format offered as a choice, and hides a camera with no usable format.
        formats = info["params"]["EnumFormat"]
        assert [f["format"] for f in formats] == ["I420", "NV12", "YUY2"], formats
        assert all(f["size"] == {"width": w, "height": h} for f in formats), formats

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
        assert not pw_session.wait_node(NODE, present=False)
        text = (tmp_path / "mattecam.log").read_text()
        assert "Traceback" not in text
        assert "someone started watching the output" in text  # viewers: on-demand resumes
    finally:
        stop(proc)
        log.close()


def test_bench_measures_the_pipewire_hand_off(pw_env: dict[str, str]) -> None:
    r = subprocess.run(
        [*MATTECAM, "bench", "--no-batch", "--no-live", "--frames", "4", "--size", "320x240",
         "--pipewire", "1", "--json"],
        env=pw_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(r.stdout)["results"]
    pw = result["pipewire"]
    assert pw["format"] == "I420" and pw["frames"] >= 20, pw
    assert 0 < pw["convert_median_ms"] <= pw["write_median_ms"] < 20, pw
