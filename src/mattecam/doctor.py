"""``mattecam doctor``: checks the virtual camera driver, permissions, cameras and models."""

from __future__ import annotations

import ctypes.util
import grp
import os
import pwd
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mattecam import devices
from mattecam.devices import Device
from mattecam.errors import MattecamError
from mattecam.imaging import libyuv
from mattecam.sinks import pipewire
from mattecam.sinks.v4l2loopback import MODPROBE
from mattecam.v4l2 import ioctl as v4l2

Level = Literal["ok", "info", "warn", "fail"]

INSTALL_DRIVER = (
    "sudo apt install v4l2loopback-dkms linux-headers-$(uname -r)   (Debian/Ubuntu; "
    "Fedora: akmod-v4l2loopback; Arch: v4l2loopback-dkms)"
)
AT_BOOT = (
    "echo v4l2loopback | sudo tee /etc/modules-load.d/v4l2loopback.conf && echo 'options "
    'v4l2loopback devices=1 video_nr=10 exclusive_caps=1 card_label="mattecam"\' | sudo tee '
    "/etc/modprobe.d/v4l2loopback.conf"
)
JOIN_VIDEO = "sudo usermod -aG video $USER, then log out and in again"
#: The oldest v4l2loopback that reports whether anyone watches (for on-demand camera use).
VIEWER_EVENTS_VERSION = (0, 13)


@dataclass(frozen=True)
class Finding:
    """One result: how bad, about what, what was seen, and the command that fixes it."""

    level: Level
    topic: str
    message: str
    fix: str = ""


def parse_version(text: str) -> tuple[int, ...]:
    """``0.12.7`` -> (0, 12, 7); unparsable parts end the tuple."""
    parts = []
    for piece in text.strip().split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def module_installed(release: str | None = None, root: Path = Path("/lib/modules")) -> bool:
    """Whether a v4l2loopback module file exists for the running kernel."""
    base = root / (release or os.uname().release)
    try:
        return any(base.rglob("v4l2loopback.ko*"))
    except OSError:
        return False


def loaded_at_boot(etc: Path = Path("/etc")) -> bool:
    """Whether v4l2loopback is listed in modules-load.d (or /etc/modules)."""
    candidates = [etc / "modules", *sorted((etc / "modules-load.d").glob("*.conf"))]
    for path in candidates:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        if any(line.split("#")[0].strip() == "v4l2loopback" for line in lines):
            return True
    return False


def check_module(
    module: dict[str, str], *, installed: bool, at_boot: bool, loopbacks: Sequence[Device]
) -> list[Finding]:
    """v4l2loopback: loaded, version, exclusive_caps, loaded at boot."""
    topic = "v4l2loopback"
    if not module:
        if installed:
            return [Finding("fail", topic, "the module is installed but not loaded.", MODPROBE)]
        return [
            Finding(
                "fail",
                topic,
                "the module is not installed (no virtual camera is possible).",
                f"{INSTALL_DRIVER}; then {MODPROBE}",
            )
        ]
    version = module.get("version", "")
    out = [Finding("ok", topic, f"loaded, version {version or 'unknown'}")]
    parsed = parse_version(version)
    if parsed and parsed < VIEWER_EVENTS_VERSION:
        out.append(
            Finding(
                "warn",
                topic,
                f"version {version} cannot tell when an app watches the virtual camera, so "
                "mattecam keeps the real camera on (its light stays lit) while it runs.",
                "install v4l2loopback 0.13 or newer (e.g. a newer v4l2loopback-dkms or the "
                "upstream release) and reload the module",
            )
        )
    caps = [v.strip().upper() for v in module.get("exclusive_caps", "").split(",") if v.strip()]
    used = caps[: max(1, len(loopbacks))] if caps else []
    if used and any(v.startswith("N") or v == "0" for v in used):
        out.append(
            Finding(
                "warn",
                topic,
                "exclusive_caps is off: Chrome, Chromium and other WebRTC apps will not list "
                "the virtual camera.",
                f"sudo modprobe -r v4l2loopback && {MODPROBE}",
            )
        )
    elif used:
        out.append(Finding("ok", topic, "exclusive_caps is on (browsers list the device)"))
    if not at_boot:
        out.append(
            Finding(
                "info",
                topic,
                "the module is not set to load at boot; after a restart you will need the "
                "modprobe line again.",
                AT_BOOT,
            )
        )
    return out


def check_loopback_devices(loopbacks: Sequence[Device], *, module_loaded: bool) -> list[Finding]:
    """Each virtual camera: its label and whether mattecam can write to it."""
    topic = "virtual cameras"
    if not loopbacks:
        if not module_loaded:
            return []  # the module finding already says what to do
        return [
            Finding(
                "fail",
                topic,
                "the module is loaded but has no devices.",
                f"sudo modprobe -r v4l2loopback && {MODPROBE}   (or, with 0.13+: sudo "
                "v4l2loopback-ctl add -n mattecam -x 1 /dev/video10)",
            )
        ]
    out = []
    for d in loopbacks:
        if d.error:
            out.append(Finding("fail", topic, f"{d.path}: cannot open ({d.error})", JOIN_VIDEO))
        elif d.output:
            out.append(Finding("ok", topic, f"{d.path}: {d.card!r}, ready for mattecam"))
        else:
            out.append(
                Finding(
                    "warn",
                    topic,
                    f"{d.path}: {d.card!r} is in use: another program is writing to it.",
                    "stop that program (`fuser -v " + str(d.path) + "` shows it), or use "
                    "another device",
                )
            )
    return out


@dataclass(frozen=True)
class NodeAccess:
    """One /dev/video node and whether this user may open it."""

    path: Path
    group: str
    allowed: bool


def check_permissions(
    nodes: Sequence[NodeAccess],
    *,
    user: str,
    is_root: bool,
    session_groups: Iterable[str],
    listed_groups: Iterable[str],
) -> list[Finding]:
    """Whether the video devices can be opened; membership of their group (``video``)."""
    topic = "permissions"
    if is_root:
        return [Finding("ok", topic, "running as root (every device is accessible)")]
    session, listed = set(session_groups), set(listed_groups)
    denied = [n for n in nodes if not n.allowed]
    groups = sorted({n.group for n in nodes}) or ["video"]
    out: list[Finding] = []
    for group in groups:
        if group in session:
            out.append(Finding("ok", topic, f"{user} is in the {group} group"))
        elif group in listed:
            out.append(
                Finding(
                    "warn",
                    topic,
                    f"{user} was added to the {group} group, but this login session started "
                    "before that.",
                    "log out and in again (or run `newgrp " + group + "` in this terminal)",
                )
            )
        elif denied or not nodes:
            fix = JOIN_VIDEO.replace("video", group, 1)
            level: Level = "fail" if denied else "warn"
            out.append(Finding(level, topic, f"{user} is not in the {group} group.", fix))
    for n in denied:
        out.append(
            Finding(
                "fail",
                topic,
                f"{n.path} cannot be opened for reading and writing.",
                JOIN_VIDEO.replace("video", n.group, 1),
            )
        )
    return out


def check_cameras(cameras: Sequence[Device]) -> list[Finding]:
    """Real cameras and the formats they offer."""
    topic = "cameras"
    usable = [d for d in cameras if d.capture or d.error]
    if not usable:
        return [
            Finding(
                "warn",
                topic,
                "no camera found.",
                "plug a webcam in (`mattecam devices` lists what is there), or use a video "
                "file with -i FILE",
            )
        ]
    out = []
    for d in usable:
        if d.error:
            out.append(Finding("fail", topic, f"{d.path}: cannot open ({d.error})", JOIN_VIDEO))
            continue
        formats = "; ".join(
            f"{fourcc} {' '.join(sizes[:4]) or 'any size'}" for fourcc, sizes in d.formats.items()
        )
        out.append(Finding("ok", topic, f"{d.path}: {d.card} ({formats or 'no formats listed'})"))
        if d.formats and "MJPG" not in d.formats:
            out.append(
                Finding(
                    "info",
                    topic,
                    f"{d.path} offers no MJPEG: HD at 30 fps may not be possible over USB 2.",
                    "use --width 640 --height 480, or --camera-format yuyv",
                )
            )
    return out


PW_V4L2_INSTALL = (
    "sudo apt install pipewire-v4l2   (Debian/Ubuntu; Fedora: pipewire-v4l2; Arch: pipewire-v4l2)"
)
#: How each kind of app opens a PipeWire camera (-o pipewire): (who, what it needs).
PIPEWIRE_APPS = (
    (
        "Chrome/Chromium list PipeWire cameras only with a flag",
        "open chrome://flags/#enable-webrtc-pipewire-camera, set it to Enabled and relaunch",
    ),
    (
        "Firefox lists PipeWire cameras only with a pref (on by default on some distributions)",
        "in about:config set media.webrtc.camera.allow-pipewire to true and restart Firefox",
    ),
    (
        "Flatpak apps see PipeWire cameras only (no /dev/video*), through the camera portal",
        "use -o pipewire, and allow the camera when the app asks (xdg-desktop-portal)",
    ),
    (
        "V4L2-only apps such as Zoom do not see PipeWire cameras",
        "start them as `pw-v4l2 zoom` (pipewire-v4l2), or use the v4l2loopback output (-o auto)",
    ),
)


def check_pipewire(*, library: bool, daemon_problem: str | None, pw_v4l2: bool) -> list[Finding]:
    """PipeWire, for ``-o pipewire``: the client library, a running daemon, ``pw-v4l2``,
    then how each kind of app sees a PipeWire camera. Never a failure: v4l2loopback may be
    the output the user wants."""
    topic = "PipeWire"
    out = []
    if library:
        out.append(Finding("ok", topic, "libpipewire-0.3 is installed"))
    else:
        out.append(
            Finding(
                "info",
                topic,
                "libpipewire-0.3 is not installed, so -o pipewire (a camera without a kernel "
                "module) is not possible.",
                pipewire.INSTALL_HINT,
            )
        )
    if daemon_problem is None:
        out.append(Finding("ok", topic, "the daemon is running"))
    else:
        out.append(
            Finding(
                "info",
                topic,
                f"the daemon is not running ({daemon_problem}), so -o pipewire is not possible.",
                "systemctl --user start pipewire wireplumber   (or use -o auto, v4l2loopback)",
            )
        )
    if pw_v4l2:
        out.append(Finding("ok", topic, "pw-v4l2 is installed (for V4L2-only apps)"))
    else:
        out.append(
            Finding(
                "info",
                topic,
                "pw-v4l2 is not installed: V4L2-only apps (Zoom) cannot open a PipeWire camera.",
                PW_V4L2_INSTALL,
            )
        )
    if library and daemon_problem is None:
        out.extend(Finding("info", "PipeWire apps", who, fix) for who, fix in PIPEWIRE_APPS)
    return out


def check_libyuv(*, available: bool) -> list[Finding]:
    """libyuv: the SIMD blend, packing and MJPEG decoding on the hot path (optional)."""
    if available:
        return [Finding("ok", "libyuv", "libyuv is installed (SIMD blend and YUV packing)")]
    return [
        Finding(
            "info",
            "libyuv",
            "libyuv is not installed: mattecam uses slower OpenCV paths (1.5-2 ms more "
            "CPU per 720p frame)",
            "sudo apt install libyuv0",
        )
    ]


def check_models() -> list[Finding]:
    """Each known model: cached and matching its checksum."""
    from mattecam.segmentation import models

    out = []
    for info in models.MODELS.values():
        path = models.cached_path(info)
        if not path.is_file():
            out.append(
                Finding(
                    "warn",
                    "models",
                    f"{info.name} is not in the cache ({path}); it is downloaded on first use, "
                    "which needs the network.",
                    "mattecam models fetch",
                )
            )
        elif not models.verify(info, path):
            out.append(
                Finding(
                    "fail",
                    "models",
                    f"{path} is damaged (its checksum does not match).",
                    "mattecam models fetch --force",
                )
            )
        else:
            out.append(Finding("ok", "models", f"{info.name}: {path} (checksum verified)"))
    return out


def check_config(path: Path) -> list[Finding]:
    """The config file, if there is one, parses and validates."""
    from mattecam import configfile

    if not path.is_file():
        return [Finding("info", "config", f"no config file ({path}); flags and defaults apply")]
    try:
        values = configfile.read(path)
        configfile.merge({"outputs": ("null",), **values}, {})
    except MattecamError as e:
        return [Finding("fail", "config", str(e), f"edit {path}")]
    return [Finding("ok", "config", f"{path} is valid")]


def check_service(unit: Path) -> list[Finding]:
    """Whether the systemd user unit is installed."""
    if unit.is_file():
        return [Finding("ok", "service", f"systemd user unit installed ({unit})")]
    return [
        Finding(
            "info",
            "service",
            "mattecam does not start at login.",
            "mattecam install-service   (a systemd user unit)",
        )
    ]


def _node_access(nodes: Sequence[Path]) -> list[NodeAccess]:
    out = []
    for node in nodes:
        try:
            gid = node.stat().st_gid
            group = grp.getgrgid(gid).gr_name
        except (OSError, KeyError):
            group = "video"
        out.append(NodeAccess(node, group, os.access(node, os.R_OK | os.W_OK)))
    return out


def _groups() -> tuple[str, list[str], list[str]]:
    """(user name, groups of this session, groups /etc/group lists the user in)."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    session = []
    for gid in os.getgroups():
        try:
            session.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    listed = [g.gr_name for g in grp.getgrall() if user in g.gr_mem]
    return user, session, listed


def run_checks() -> list[Finding]:
    """Look at this machine and return every finding."""
    from mattecam.configfile import default_path
    from mattecam.service import unit_path

    all_devices = devices.all_devices()
    loops = [d for d in all_devices if d.loopback]
    cams = [d for d in all_devices if not d.loopback]
    module = devices.loopback_module()
    user, session, listed = _groups()
    findings = [
        *check_module(
            module,
            installed=bool(module) or module_installed(),
            at_boot=loaded_at_boot(),
            loopbacks=loops,
        ),
        *check_loopback_devices(loops, module_loaded=bool(module)),
        *check_permissions(
            _node_access(v4l2.video_nodes()),
            user=user,
            is_root=os.geteuid() == 0,
            session_groups=session,
            listed_groups=listed,
        ),
        *check_cameras(cams),
        *check_pipewire(
            library=ctypes.util.find_library("pipewire-0.3") is not None,
            daemon_problem=pipewire.daemon_problem(),
            pw_v4l2=shutil.which("pw-v4l2") is not None,
        ),
        *check_libyuv(available=libyuv.available()),
        *check_models(),
        *check_config(default_path()),
        *check_service(unit_path()),
    ]
    return findings


LABELS: dict[Level, str] = {"ok": "ok", "info": "note", "warn": "WARN", "fail": "FAIL"}


def format_report(findings: Sequence[Finding]) -> str:
    """The findings, one per line, each problem followed by its fix."""
    lines = []
    for f in findings:
        lines.append(f"{LABELS[f.level]:5} {f.topic}: {f.message}")
        if f.fix and f.level != "ok":
            lines.append(f"      fix: {f.fix}")
    fails = sum(f.level == "fail" for f in findings)
    warns = sum(f.level == "warn" for f in findings)
    if fails or warns:
        lines.append(f"{fails} problem(s) and {warns} warning(s) found; the fixes are above.")
    else:
        lines.append("everything mattecam needs is in place.")
    return "\n".join(lines)
