"""The few V4L2 structures and ioctls mattecam needs, packed with :mod:`struct`.

Layouts are those of the 64-bit Linux UAPI (``linux/videodev2.h``); sizes are checked
against the ioctl numbers, which encode them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
from dataclasses import dataclass
from pathlib import Path

# Buffer types and capabilities.
BUF_TYPE_VIDEO_CAPTURE = 1
BUF_TYPE_VIDEO_OUTPUT = 2
CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_OUTPUT = 0x00000002
CAP_DEVICE_CAPS = 0x80000000
FIELD_NONE = 1
COLORSPACE_SMPTE170M = 1  # BT.601, what the _I420/_YUYV conversions produce
COLORSPACE_SRGB = 8
FRMSIZE_TYPE_DISCRETE = 1
FRMIVAL_TYPE_DISCRETE = 1


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


_R, _W, _RW = 2, 1, 3

CAPABILITY = struct.Struct("=16s32s32sIII12x")  # 104 bytes
# v4l2_format: u32 type, 4 bytes padding (the union holds pointers), 200-byte union.
PIX_FORMAT = struct.Struct("=4x4xIIIIIIIIIIII152x")  # type at 0, pix at 8, total 208
FMTDESC = struct.Struct("=III32sI16x")  # 64 bytes: index, type, flags, description, pixfmt
FRMSIZE = struct.Struct("=III24x8x")  # index, pixel_format, type, union, reserved: 44 bytes
FRMIVAL = struct.Struct("=IIIIIII24x")  # index, pixfmt, w, h, type, discrete num/den (52)
STREAMPARM = struct.Struct("=IIIII")  # type, capability, mode, timeperframe num, den (+200)
EVENT_SUB = struct.Struct("=IIII16x")  # type, id, flags, reserved (32 bytes)

VIDIOC_QUERYCAP = _ioc(_R, 0, 104)
VIDIOC_ENUM_FMT = _ioc(_RW, 2, 64)
VIDIOC_G_FMT = _ioc(_RW, 4, 208)
VIDIOC_S_FMT = _ioc(_RW, 5, 208)
VIDIOC_STREAMON = _ioc(_W, 18, 4)
VIDIOC_STREAMOFF = _ioc(_W, 19, 4)
VIDIOC_G_PARM = _ioc(_RW, 21, 204)
VIDIOC_S_PARM = _ioc(_RW, 22, 204)
VIDIOC_ENUM_FRAMESIZES = _ioc(_RW, 74, 44)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_RW, 75, 52)
VIDIOC_G_CTRL = _ioc(_RW, 27, 8)
VIDIOC_DQEVENT = 0x80885659  # struct v4l2_event is 136 bytes on 64-bit
VIDIOC_SUBSCRIBE_EVENT = _ioc(_W, 90, 32)

# v4l2loopback's private controls start at V4L2_CID_USER_BASE | 0xf000.
CID_KEEP_FORMAT = 0x00980900 | 0xF000

EVENT_PRIVATE_START = 0x08000000
# v4l2loopback >= 0.13 posts this when the number of readers streaming changes.
EVENT_PRI_CLIENT_USAGE = EVENT_PRIVATE_START + 0x08E00000 + 1
EVENT_SUB_FL_SEND_INITIAL = 1

assert VIDIOC_SUBSCRIBE_EVENT == 0x4020565A
assert VIDIOC_QUERYCAP == 0x80685600


def fourcc_code(text: str) -> int:
    """``"YUYV"`` -> the V4L2 pixel format code."""
    a, b, c, d = (ord(ch) for ch in text)
    return a | (b << 8) | (c << 16) | (d << 24)


def fourcc_text(code: int) -> str:
    """The inverse of :func:`fourcc_code`."""
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))


@dataclass(frozen=True, slots=True)
class Capability:
    """What ``VIDIOC_QUERYCAP`` says about a device."""

    driver: str
    card: str
    bus_info: str
    version: int
    capabilities: int
    device_caps: int

    @property
    def caps(self) -> int:
        """The capabilities of this node (device_caps when the driver reports them)."""
        return self.device_caps if self.capabilities & CAP_DEVICE_CAPS else self.capabilities

    @property
    def version_text(self) -> str:
        v = self.version
        return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"

    @property
    def is_loopback(self) -> bool:
        return self.driver == "v4l2 loopback"


@dataclass(frozen=True, slots=True)
class PixFormat:
    """The single-planar format of a buffer type."""

    width: int
    height: int
    pixelformat: int
    field: int
    bytesperline: int
    sizeimage: int
    colorspace: int

    @property
    def fourcc(self) -> str:
        return fourcc_text(self.pixelformat)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def querycap(fd: int) -> Capability:
    buf = bytearray(CAPABILITY.size)
    fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
    driver, card, bus, version, caps, dcaps = CAPABILITY.unpack(buf)
    return Capability(_cstr(driver), _cstr(card), _cstr(bus), version, caps, dcaps)


def _pack_format(buf_type: int, f: PixFormat) -> bytearray:
    buf = bytearray(208)
    struct.pack_into("=I", buf, 0, buf_type)
    struct.pack_into(
        "=IIIIIII",
        buf,
        8,
        f.width,
        f.height,
        f.pixelformat,
        f.field,
        f.bytesperline,
        f.sizeimage,
        f.colorspace,
    )
    return buf


def _unpack_format(buf: bytes | bytearray) -> PixFormat:
    w, h, pf, field, bpl, size, cs = struct.unpack_from("=IIIIIII", buf, 8)
    return PixFormat(w, h, pf, field, bpl, size, cs)


def get_format(fd: int, buf_type: int) -> PixFormat:
    buf = bytearray(208)
    struct.pack_into("=I", buf, 0, buf_type)
    fcntl.ioctl(fd, VIDIOC_G_FMT, buf)
    return _unpack_format(buf)


def set_format(fd: int, buf_type: int, f: PixFormat) -> PixFormat:
    """``VIDIOC_S_FMT``; returns what the driver says it set."""
    buf = _pack_format(buf_type, f)
    fcntl.ioctl(fd, VIDIOC_S_FMT, buf)
    return _unpack_format(buf)


def set_frame_interval(fd: int, buf_type: int, num: int, den: int) -> tuple[int, int]:
    """``VIDIOC_S_PARM`` with timeperframe num/den seconds; returns what was set."""
    buf = bytearray(204)
    # capture and output parm share the layout of their first fields:
    # capability, capturemode/outputmode, timeperframe {numerator, denominator}.
    struct.pack_into("=IIIII", buf, 0, buf_type, 0, 0, num, den)
    fcntl.ioctl(fd, VIDIOC_S_PARM, buf)
    _, _, _, n, d = struct.unpack_from("=IIIII", buf, 0)
    return n, d


def stream(fd: int, buf_type: int, on: bool) -> None:
    fcntl.ioctl(fd, VIDIOC_STREAMON if on else VIDIOC_STREAMOFF, struct.pack("=I", buf_type))


def get_control(fd: int, cid: int) -> int | None:
    """``VIDIOC_G_CTRL``: the control's value, or None when the device has no such control."""
    buf = bytearray(struct.pack("=Ii", cid, 0))
    try:
        fcntl.ioctl(fd, VIDIOC_G_CTRL, buf)
    except OSError:
        return None
    return int(struct.unpack_from("=i", buf, 4)[0])


def enum_formats(fd: int, buf_type: int) -> list[tuple[str, str]]:
    """(fourcc, description) of every format the node offers for ``buf_type``."""
    out = []
    for index in range(64):
        buf = bytearray(FMTDESC.size)
        struct.pack_into("=II", buf, 0, index, buf_type)
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FMT, buf)
        except OSError:
            break
        _, _, _, desc, pixfmt = struct.unpack_from("=III32sI", buf, 0)
        out.append((fourcc_text(pixfmt), _cstr(desc)))
    return out


def enum_frame_sizes(fd: int, pixfmt: int) -> list[tuple[int, int]]:
    """Discrete sizes offered for a pixel format (empty for stepwise/continuous ranges)."""
    out = []
    for index in range(128):
        buf = bytearray(FRMSIZE.size)
        struct.pack_into("=II", buf, 0, index, pixfmt)
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, buf)
        except OSError:
            break
        _, _, kind, w, h = struct.unpack_from("=IIIII", buf, 0)
        if kind != FRMSIZE_TYPE_DISCRETE:
            break
        out.append((w, h))
    return out


def enum_frame_rates(fd: int, pixfmt: int, width: int, height: int) -> list[float]:
    """Discrete frame rates offered for a format and size."""
    out = []
    for index in range(64):
        buf = bytearray(FRMIVAL.size)
        struct.pack_into("=IIII", buf, 0, index, pixfmt, width, height)
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FRAMEINTERVALS, buf)
        except OSError:
            break
        _, _, _, _, kind, num, den = struct.unpack_from("=IIIIIII", buf, 0)
        if kind != FRMIVAL_TYPE_DISCRETE or num == 0:
            break
        out.append(den / num)
    return out


def subscribe_client_usage(fd: int) -> bool:
    """Subscribe to v4l2loopback's reader-count event; False when the driver lacks it."""
    buf = EVENT_SUB.pack(EVENT_PRI_CLIENT_USAGE, 0, EVENT_SUB_FL_SEND_INITIAL, 0)
    try:
        fcntl.ioctl(fd, VIDIOC_SUBSCRIBE_EVENT, bytearray(buf))
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOTTY, errno.ENOENT):
            return False
        raise
    return True


def event_pending(fd: int) -> bool:
    """Whether a V4L2 event is waiting on ``fd`` (``poll`` reports it as POLLPRI)."""
    poller = select.poll()
    poller.register(fd, select.POLLPRI)
    return any(ev & select.POLLPRI for _, ev in poller.poll(0))


def dequeue_client_usage(fd: int) -> int | None:
    """The reader count from a pending client-usage event, or None if none is pending.

    Never blocks: ``VIDIOC_DQEVENT`` on a blocking fd waits until an event arrives (a
    virtual camera that nobody opens would hang its writer), so ``poll`` is asked first.
    """
    if not event_pending(fd):
        return None
    buf = bytearray(136)
    try:
        fcntl.ioctl(fd, VIDIOC_DQEVENT, buf)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EAGAIN):
            return None
        raise
    (ev_type,) = struct.unpack_from("=I", buf, 0)
    if ev_type != EVENT_PRI_CLIENT_USAGE:
        return None
    (count,) = struct.unpack_from("=I", buf, 8)
    return int(count)


def video_nodes() -> list[Path]:
    """Every /dev/videoN, in number order."""

    def number(p: Path) -> int:
        digits = p.name.removeprefix("video")
        return int(digits) if digits.isdigit() else 1 << 30

    return sorted(Path("/dev").glob("video*"), key=number)


def open_device(path: str, *, nonblock: bool = False) -> int:
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblock else 0)
    return os.open(path, flags)


assert FMTDESC.size == 64 and FRMSIZE.size == 44 and FRMIVAL.size == 52
assert VIDIOC_ENUM_FMT == 0xC0405602 and VIDIOC_G_FMT == 0xC0D05604
assert VIDIOC_G_CTRL == 0xC008561B
