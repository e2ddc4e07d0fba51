"""``mattecam doctor``: each check on made-up machines, and the real command here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mattecam import devices, doctor
from mattecam.devices import Device
from mattecam.doctor import Finding, NodeAccess, check_libyuv
from mattecam.sinks.v4l2loopback import MODPROBE


def levels(findings: list[Finding]) -> list[str]:
    return [f.level for f in findings]


def loopback(path: str = "/dev/video10", *, output: bool = True, error: str = "") -> Device:
    return Device(Path(path), card="mattecam", driver="v4l2 loopback", output=output, error=error)


def camera(path: str = "/dev/video0", formats: dict[str, list[str]] | None = None) -> Device:
    formats = formats if formats is not None else {"MJPG": ["1280x720@30"]}
    return Device(Path(path), card="HD Webcam", driver="uvcvideo", capture=True, formats=formats)


def test_module_not_installed_or_not_loaded() -> None:
    (f,) = doctor.check_module({}, installed=False, at_boot=False, loopbacks=[])
    assert f.level == "fail" and "not installed" in f.message
    assert "v4l2loopback-dkms" in f.fix and MODPROBE in f.fix
    (f,) = doctor.check_module({}, installed=True, at_boot=False, loopbacks=[])
    assert f.level == "fail" and "not loaded" in f.message and f.fix == MODPROBE


def test_old_version_and_exclusive_caps_off_are_flagged() -> None:
    module = {"version": "0.12.7", "exclusive_caps": "N,N,N,N,N,N,N,N", "devices": "1"}
    found = doctor.check_module(module, installed=True, at_boot=True, loopbacks=[loopback()])
    assert levels(found) == ["ok", "warn", "warn"]
    assert "0.12.7" in found[0].message
    assert "0.13" in found[1].fix
    assert "Chrome" in found[2].message and "exclusive_caps=1" in found[2].fix


def test_a_good_module_only_notes_loading_at_boot() -> None:
    module = {"version": "0.13.2", "exclusive_caps": "Y,N,N,N", "devices": "1"}
    found = doctor.check_module(module, installed=True, at_boot=False, loopbacks=[loopback()])
    assert levels(found) == ["ok", "ok", "info"]
    assert "modules-load.d" in found[2].fix
    # The second device's N is not used when there is one device.
    found = doctor.check_module(module, installed=True, at_boot=True, loopbacks=[loopback()])
    assert levels(found) == ["ok", "ok"]


def test_loaded_at_boot_reads_modules_load_d(tmp_path: Path) -> None:
    (tmp_path / "modules-load.d").mkdir()
    assert not doctor.loaded_at_boot(tmp_path)
    (tmp_path / "modules-load.d" / "other.conf").write_text("# v4l2loopback\nsnd\n")
    assert not doctor.loaded_at_boot(tmp_path)
    (tmp_path / "modules-load.d" / "v4l2.conf").write_text("v4l2loopback  # virtual camera\n")
    assert doctor.loaded_at_boot(tmp_path)


def test_module_installed_looks_in_the_kernel_tree(tmp_path: Path) -> None:
    assert not doctor.module_installed("6.1.0", tmp_path)
    d = tmp_path / "6.1.0" / "updates" / "dkms"
    d.mkdir(parents=True)
    (d / "v4l2loopback.ko.xz").write_bytes(b"")
    assert doctor.module_installed("6.1.0", tmp_path)


def test_virtual_camera_devices() -> None:
    assert doctor.check_loopback_devices([], module_loaded=False) == []
    (f,) = doctor.check_loopback_devices([], module_loaded=True)
    assert f.level == "fail" and "no devices" in f.message
    found = doctor.check_loopback_devices(
        [
            loopback(),
            loopback("/dev/video11", output=False),
            loopback("/dev/video12", error="Permission denied"),
        ],
        module_loaded=True,
    )
    assert levels(found) == ["ok", "warn", "fail"]
    assert "'mattecam'" in found[0].message and "/dev/video10" in found[0].message
    assert "in use" in found[1].message and "fuser" in found[1].fix
    assert "usermod -aG video" in found[2].fix


def test_permissions() -> None:
    nodes = [NodeAccess(Path("/dev/video0"), "video", allowed=False)]
    found = doctor.check_permissions(
        nodes, user="ann", is_root=False, session_groups=["ann"], listed_groups=[]
    )
    assert levels(found) == ["fail", "fail"]
    assert "not in the video group" in found[0].message
    assert "sudo usermod -aG video $USER" in found[0].fix
    found = doctor.check_permissions(
        nodes, user="ann", is_root=False, session_groups=["ann"], listed_groups=["video"]
    )
    assert found[0].level == "warn" and "log out" in found[0].fix
    ok = [NodeAccess(Path("/dev/video0"), "video", allowed=True)]
    found = doctor.check_permissions(
        ok, user="ann", is_root=False, session_groups=["video"], listed_groups=["video"]
    )
    assert levels(found) == ["ok"]
    found = doctor.check_permissions(
        nodes, user="root", is_root=True, session_groups=[], listed_groups=[]
    )
    assert levels(found) == ["ok"]


def test_cameras() -> None:
    (f,) = doctor.check_cameras([])
    assert f.level == "warn" and "-i FILE" in f.fix
    found = doctor.check_cameras([camera(), camera("/dev/video2", {"YUYV": ["640x480@30"]})])
    assert levels(found) == ["ok", "ok", "info"]
    assert "MJPG 1280x720@30" in found[0].message
    assert "no MJPEG" in found[2].message
    (f,) = doctor.check_cameras([Device(Path("/dev/video0"), error="Permission denied")])
    assert f.level == "fail" and "video" in f.fix


def test_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mattecam.segmentation import models

    monkeypatch.setenv("MATTECAM_CACHE_DIR", str(tmp_path))
    found = doctor.check_models()
    assert levels(found) == ["warn", "warn"] and found[0].fix == "mattecam models fetch"
    (tmp_path / models.MODELS["landscape"].filename).write_bytes(b"not a model")
    found = doctor.check_models()
    assert found[0].level == "fail" and found[0].fix == "mattecam models fetch --force"


def test_models_ok(model_cache: Path) -> None:
    assert levels(doctor.check_models()) == ["ok", "ok"]


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert levels(doctor.check_config(path)) == ["info"]
    path.write_text('background = "blur"\n')
    assert levels(doctor.check_config(path)) == ["ok"]
    path.write_text("blurr = 3\n")
    (f,) = doctor.check_config(path)
    assert f.level == "fail" and "unknown key 'blurr'" in f.message and str(path) in f.fix


def test_report_prints_a_fix_under_each_problem() -> None:
    text = doctor.format_report(
        [
            Finding("ok", "a", "fine", "unused"),
            Finding("fail", "b", "broken", "do this"),
            Finding("warn", "c", "odd", "do that"),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "ok    a: fine"
    assert lines[1:5] == [
        "FAIL  b: broken",
        "      fix: do this",
        "WARN  c: odd",
        "      fix: do that",
    ]
    assert "1 problem(s) and 1 warning(s)" in lines[-1]
    assert "everything" in doctor.format_report([Finding("ok", "a", "fine")])


def test_run_checks_on_a_made_up_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path
) -> None:
    """The whole doctor against a fake sysfs and device list: loaded 0.12, exclusive_caps
    off, one virtual camera and one camera."""
    sysmod = tmp_path / "sys" / "v4l2loopback"
    (sysmod / "parameters").mkdir(parents=True)
    (sysmod / "version").write_text("0.12.7\n")
    (sysmod / "parameters" / "exclusive_caps").write_text("N,N,N,N,N,N,N,N\n")
    (sysmod / "parameters" / "card_label").write_text("mattecam\n")
    monkeypatch.setattr(devices, "SYS_MODULE", sysmod)
    monkeypatch.setattr(devices, "all_devices", lambda: [camera(), loopback()])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    findings = doctor.run_checks()
    topics = {(f.topic, f.level) for f in findings}
    assert ("v4l2loopback", "ok") in topics and ("v4l2loopback", "warn") in topics
    assert ("virtual cameras", "ok") in topics and ("cameras", "ok") in topics
    assert ("models", "ok") in topics
    assert any("exclusive_caps" in f.message for f in findings)


def test_the_command_on_this_machine() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mattecam", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = r.stdout.splitlines()
    assert any(line.startswith(("ok", "FAIL", "WARN", "note")) for line in lines)
    problems = [i for i, line in enumerate(lines) if line.startswith(("FAIL", "WARN"))]
    for i in problems:
        assert lines[i + 1].startswith("      fix: "), lines[i]
    fails = any(line.startswith("FAIL") for line in lines)
    assert r.returncode == (1 if fails else 0), r.stderr
    if not devices.loopback_module():
        assert fails and MODPROBE in r.stdout


def test_pipewire_missing_is_a_note_not_a_failure() -> None:
    found = doctor.check_pipewire(library=False, daemon_problem="no socket", pw_v4l2=False)
    assert levels(found) == ["info", "info", "info"]  # v4l2loopback may be what is used
    assert "libpipewire-0.3-0" in found[0].fix
    assert "no socket" in found[1].message and "systemctl --user start pipewire" in found[1].fix
    assert "Zoom" in found[2].message and "pipewire-v4l2" in found[2].fix
    assert not any(f.topic == "PipeWire apps" for f in found)  # moot without PipeWire


def test_pipewire_present_says_how_each_app_sees_the_camera() -> None:
    found = doctor.check_pipewire(library=True, daemon_problem=None, pw_v4l2=True)
    assert levels(found) == ["ok", "ok", "ok", "info", "info", "info", "info"]
    text = doctor.format_report(found)
    assert "chrome://flags/#enable-webrtc-pipewire-camera" in text
    assert "media.webrtc.camera.allow-pipewire to true" in text
    assert "Flatpak" in text and "portal" in text
    assert "pw-v4l2 zoom" in text and "-o auto" in text
    assert "everything mattecam needs is in place" in text  # notes are not problems


def test_run_checks_without_pipewire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path
) -> None:
    """No daemon socket: PipeWire lines are notes, and the exit status does not change."""
    monkeypatch.setattr(devices, "all_devices", lambda: [camera(), loopback()])
    monkeypatch.setattr(devices, "loopback_module", lambda: {"version": "0.13.2"})
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PIPEWIRE_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("PIPEWIRE_REMOTE", raising=False)
    found = [f for f in doctor.run_checks() if f.topic.startswith("PipeWire")]
    daemon = [f for f in found if "daemon" in f.message]
    assert len(daemon) == 1 and daemon[0].level == "info"
    assert str(tmp_path / "pipewire-0") in daemon[0].message
    assert all(f.level in ("ok", "info") for f in found)


def test_libyuv_finding_names_the_package() -> None:
    assert check_libyuv(available=True)[0].level == "ok"
    (missing,) = check_libyuv(available=False)
    assert missing.level == "info" and missing.fix == "sudo apt install libyuv0"
