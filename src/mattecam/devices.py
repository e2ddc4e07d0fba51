"""``mattecam devices``: the cameras and virtual cameras on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mattecam.sinks import pipewire
from mattecam.sinks.v4l2loopback import MODPROBE, SETUP_HINT
from mattecam.v4l2 import ioctl as v4l2

SYS_MODULE = Path("/sys/module/v4l2loopback")


@dataclass
class Device:
    """One /dev/videoN node, as the driver describes it."""

    path: Path
    card: str = ""
    driver: str = ""
    version: str = ""
    capture: bool = False
    output: bool = False
    #: fourcc -> list of "WxH@fps,fps" strings (capture devices only)
    formats: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""

    @property
    def loopback(self) -> bool:
        return self.driver == "v4l2 loopback"


def probe(path: Path) -> Device:
    """Ask one node what it is; never raises (errors land in ``error``)."""
    dev = Device(path)
    try:
        fd = v4l2.open_device(str(path), nonblock=True)
    except OSError as e:
        dev.error = e.strerror or str(e)
        return dev
    try:
        cap = v4l2.querycap(fd)
        dev.card, dev.driver, dev.version = cap.card, cap.driver, cap.version_text
        dev.capture = bool(cap.caps & v4l2.CAP_VIDEO_CAPTURE)
        dev.output = bool(cap.caps & v4l2.CAP_VIDEO_OUTPUT)
        if dev.capture and not dev.loopback:
            for fourcc, _desc in v4l2.enum_formats(fd, v4l2.BUF_TYPE_VIDEO_CAPTURE):
                sizes = []
                for w, h in v4l2.enum_frame_sizes(fd, v4l2.fourcc_code(fourcc))[:12]:
                    rates = v4l2.enum_frame_rates(fd, v4l2.fourcc_code(fourcc), w, h)
                    r = ",".join(f"{x:g}" for x in sorted(set(rates), reverse=True)[:4])
                    sizes.append(f"{w}x{h}" + (f"@{r}" if r else ""))
                dev.formats[fourcc] = sizes
    except OSError as e:
        dev.error = e.strerror or str(e)
    finally:
        os.close(fd)
    return dev


def all_devices() -> list[Device]:
    """Every /dev/video* node, in number order."""
    return [probe(p) for p in v4l2.video_nodes()]


def loopback_module() -> dict[str, str]:
    """v4l2loopback's version and parameters from sysfs (empty when it is not loaded)."""
    if not SYS_MODULE.is_dir():
        return {}
    info = {}
    version = SYS_MODULE / "version"
    if version.is_file():
        info["version"] = version.read_text().strip()
    params = SYS_MODULE / "parameters"
    if params.is_dir():
        for p in sorted(params.iterdir()):
            try:
                info[p.name] = p.read_text().strip()
            except OSError:
                continue
    return info


#: How long ``pw-dump`` may take before the listing gives up on it.
PW_DUMP_TIMEOUT = 5.0
PW_DUMP_HINT = (
    "Debian/Ubuntu: sudo apt install pipewire-bin; Fedora: sudo dnf install pipewire-utils"
)


@dataclass(frozen=True)
class PipeWireCamera:
    """One PipeWire ``Video/Source`` node: a camera apps can open through PipeWire."""

    id: int
    name: str  # node.name: what -o pipewire:NAME sets, and pipewiresrc target-object takes
    description: str  # node.description: what apps show
    role: str  # media.role: "Camera" for cameras (mattecam's node, libcamera, v4l2 nodes)


def parse_pw_dump(objects: Iterable[object]) -> list[PipeWireCamera]:
    """The ``Video/Source`` nodes in ``pw-dump``'s JSON (a list of objects), in id order."""
    out = []
    for o in objects:
        if not isinstance(o, dict) or o.get("type") != "PipeWire:Interface:Node":
            continue
        info = o.get("info")
        props = info.get("props") if isinstance(info, dict) else None
        if not isinstance(props, dict) or props.get("media.class") != "Video/Source":
            continue
        out.append(
            PipeWireCamera(
                id=int(o.get("id", -1)),
                name=str(props.get("node.name", "")),
                description=str(props.get("node.description", "")),
                role=str(props.get("media.role", "")),
            )
        )
    return sorted(out, key=lambda c: c.id)


def pipewire_cameras(timeout: float = PW_DUMP_TIMEOUT) -> tuple[list[PipeWireCamera], str]:
    """(the PipeWire cameras, ""), or ([], why they cannot be listed): pw-dump not
    installed, no daemon answering, or pw-dump failing. Never raises."""
    problem = pipewire.daemon_problem()
    if problem:
        return [], f"{problem[0].upper()}{problem[1:]}. {pipewire.DAEMON_HINT}"
    exe = shutil.which("pw-dump")
    if exe is None:
        return (
            [],
            f"pw-dump is not installed, so PipeWire cameras cannot be listed ({PW_DUMP_HINT}).",
        )
    try:
        r = subprocess.run([exe], capture_output=True, timeout=timeout, check=True)
        objects = json.loads(r.stdout)
    except subprocess.TimeoutExpired:
        return [], f"pw-dump did not answer within {timeout:g} s."
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        return [], f"pw-dump failed ({e})."
    if not isinstance(objects, list):
        return [], "pw-dump printed something other than a list of objects."
    return parse_pw_dump(objects), ""


def report() -> str:
    """The human-readable listing."""
    devices = all_devices()
    cams = [d for d in devices if not d.loopback]
    loops = [d for d in devices if d.loopback]
    lines = ["Cameras:"]
    if not cams:
        lines.append("  none found")
    for d in cams:
        if d.error:
            lines.append(f"  {d.path}: cannot open ({d.error})")
            continue
        kind = "capture" if d.capture else "output" if d.output else "other"
        lines.append(f"  {d.path}: {d.card} ({d.driver}, {kind})")
        for fourcc, sizes in d.formats.items():
            lines.append(f"    {fourcc}: {' '.join(sizes) or 'any size'}")
    lines.append("Virtual cameras (v4l2loopback):")
    module = loopback_module()
    if module:
        keys = ("version", "exclusive_caps", "devices", "card_label")
        shown = ", ".join(f"{k}={v}" for k, v in module.items() if k in keys)
        lines.append(f"  module: {shown}")
    if not loops:
        lines.append(f"  none found. {SETUP_HINT}")
    for d in loops:
        if d.error:
            lines.append(f"  {d.path}: cannot open ({d.error})")
            continue
        if d.output:
            state = "idle: ready for mattecam"
        else:
            state = "in use: another program is writing to it"
        lines.append(f"  {d.path}: {d.card!r} ({state})")
    if loops and module.get("exclusive_caps", "").startswith("N"):
        lines.append(
            "  note: exclusive_caps is off, so Chrome will not list these devices; reload "
            f"the module with exclusive_caps=1: {MODPROBE}"
        )
    lines.append("PipeWire cameras:")
    pw_cams, problem = pipewire_cameras()
    if problem:
        lines.append(f"  {problem}")
    elif not pw_cams:
        lines.append("  none found (mattecam publishes one with -o pipewire)")
    for c in pw_cams:
        role = f", role {c.role}" if c.role else ""
        lines.append(f"  {c.name}: {c.description!r} (node {c.id}{role})")
    return "\n".join(lines)
