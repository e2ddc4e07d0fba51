"""``mattecam devices``: the cameras and virtual cameras on this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    return "\n".join(lines)
