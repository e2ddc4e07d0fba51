"""The virtual camera: frames written straight into a v4l2loopback device."""

from __future__ import annotations

import errno
import logging
import os
import time
from fractions import Fraction
from pathlib import Path

from mattecam.errors import ConfigError, InputNotFoundError, SinkError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.imaging import placeholder
from mattecam.imaging.yuv import Picture
from mattecam.sinks.base import Sink
from mattecam.sinks.convert import Converter, PixelFormat
from mattecam.v4l2 import ioctl as v4l2

log = logging.getLogger(__name__)

MODPROBE = 'sudo modprobe v4l2loopback devices=1 video_nr=10 exclusive_caps=1 card_label="mattecam"'
SETUP_HINT = (
    f"Load the virtual camera driver with `{MODPROBE}` (Debian/Ubuntu package "
    "v4l2loopback-dkms; with v4l2loopback 0.13 or newer a device can also be added with "
    "`sudo v4l2loopback-ctl add -n mattecam -x 1 /dev/video10`), and make sure you are in "
    "the video group (`sudo usermod -aG video $USER`, then log in again)."
)
#: Where v4l2loopback (0.13 and newer) tells its version; QUERYCAP gives the kernel's.
MODULE_VERSION = Path("/sys/module/v4l2loopback/version")


def module_version() -> str:
    """The loaded v4l2loopback's version, or "" when it does not say (0.12 and older)."""
    try:
        return MODULE_VERSION.read_text().strip()
    except OSError:
        return ""


def loopback_devices() -> list[Path]:
    """Every /dev/videoN whose driver is v4l2loopback, in number order."""
    found = []
    for node in v4l2.video_nodes():
        try:
            fd = v4l2.open_device(str(node), nonblock=True)
        except OSError:
            continue
        try:
            if v4l2.querycap(fd).is_loopback:
                found.append(node)
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


class V4L2LoopbackSink(Sink):
    """Writes frames into a v4l2loopback output device, the virtual camera apps can pick.

    :meth:`open` checks the node is a v4l2loopback device that accepts output, sets the
    format and reads it back (refusing a silent substitution), sets the frame interval and
    calls ``STREAMON`` (without it, v4l2loopback 0.12 leaves an ``exclusive_caps=1`` device
    unusable after a write-only producer closes; from 0.14 on it answers EINVAL, which is
    fine). It writes a placeholder frame at once: browsers only list a loopback device a
    producer is already writing to. :meth:`close` calls ``STREAMOFF`` and closes the node.

    The sink also reports whether anyone is watching (:attr:`viewers`), from the driver's
    client-usage event (v4l2loopback >= 0.13); None when the driver cannot tell.
    """

    live = True
    wants_placeholder = True

    def __init__(self, device: str, pixel_format: PixelFormat) -> None:
        self.device_spec = device
        self.pixel_format = pixel_format
        self.device: Path | None = None
        self._fd: int | None = None
        self._streaming = False
        self._converter: Converter | None = None
        self._events = False
        self._viewers: int | None = None
        self.card = ""
        self.driver_version = ""

    # --- setup ---------------------------------------------------------------------------

    def _resolve(self) -> Path:
        if self.device_spec == "auto":
            devices = loopback_devices()
            if not devices:
                raise InputNotFoundError(f"no v4l2loopback device found. {SETUP_HINT}")
            return devices[0]
        path = Path(self.device_spec)
        if not path.exists():
            raise InputNotFoundError(f"{path} does not exist. {SETUP_HINT}")
        return path

    def open(self, size: tuple[int, int], fps: float) -> None:
        path = self._resolve()
        w, h = size
        fmt = self.pixel_format
        if (fmt.even_width and w % 2) or (fmt.even_height and h % 2):
            raise ConfigError(
                f"{fmt.name.upper()} output needs an even size, and {w}x{h} is not (Chrome "
                "rejects odd 4:2:x sizes). Choose one with --width/--height."
            )
        try:
            fd = v4l2.open_device(str(path))
        except PermissionError as e:
            raise SinkError(f"no permission to open {path} ({e}). {SETUP_HINT}") from e
        except OSError as e:
            raise SinkError(f"cannot open {path}: {e.strerror}. {SETUP_HINT}") from e
        self._fd, self.device = fd, path
        try:
            self._setup(fd, path, w, h, fps)
        except BaseException:
            self.close()
            raise

    def _setup(self, fd: int, path: Path, w: int, h: int, fps: float) -> None:
        try:
            cap = v4l2.querycap(fd)
        except OSError as e:
            raise SinkError(f"{path} is not a V4L2 device ({e.strerror}). {SETUP_HINT}") from e
        if not cap.is_loopback:
            raise SinkError(
                f"{path} is {cap.card!r} (driver {cap.driver!r}), not a v4l2loopback virtual "
                f"camera; writing to it is not possible. Pick the loopback device (`mattecam "
                f"devices` lists them) or create one. {SETUP_HINT}"
            )
        if not cap.caps & v4l2.CAP_VIDEO_OUTPUT:
            raise SinkError(self._no_output_reason(fd, path, cap))
        self.card, self.driver_version = cap.card, module_version() or "version unknown"
        fmt = self.pixel_format
        want = v4l2.PixFormat(
            width=w,
            height=h,
            pixelformat=v4l2.fourcc_code(fmt.fourcc),
            field=v4l2.FIELD_NONE,
            bytesperline=w * fmt.num // fmt.den
            if fmt.name in ("yuyv", "uyvy", "rgb24", "bgr24")
            else w,
            sizeimage=fmt.frame_bytes(w, h),
            colorspace=v4l2.COLORSPACE_SRGB
            if fmt.name in ("rgb24", "bgr24")
            else v4l2.COLORSPACE_SMPTE170M,
        )
        try:
            v4l2.set_format(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, want)
        except OSError as e:
            hint = (
                "The device may still be held by a program that ended badly, or be "
                "configured for another format; with v4l2loopback 0.12 an earlier producer "
                "that never streamed leaves it in this state until the module is reloaded "
                "(`sudo modprobe -r v4l2loopback` and load it again)."
                if e.errno == errno.EINVAL
                else ""
            )
            raise SinkError(
                f"{path} refused the format {fmt.fourcc} {w}x{h} ({e.strerror}). {hint}"
            ) from e
        got = v4l2.get_format(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT)
        if (got.width, got.height, got.pixelformat) != (w, h, want.pixelformat):
            raise UnsupportedFormatError(self._substituted(fd, path, w, h, got))
        self._frame_bytes = fmt.frame_bytes(w, h)
        if got.sizeimage < self._frame_bytes:
            raise SinkError(
                f"{path} reports {got.sizeimage} bytes per frame, less than one "
                f"{fmt.fourcc} {w}x{h} frame ({self._frame_bytes}); reload v4l2loopback."
            )
        rate = Fraction(fps).limit_denominator(1001)
        try:
            v4l2.set_frame_interval(
                fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, rate.denominator, rate.numerator
            )
        except OSError as e:
            log.warning("%s: could not set the frame rate (%s)", path, e.strerror)
        try:
            v4l2.stream(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, True)
            self._streaming = True
        except OSError as e:
            if e.errno != errno.EINVAL:  # 0.14+: STREAMON without REQBUFS; write() is fine
                raise SinkError(f"{path}: STREAMON failed ({e.strerror})") from e
        self._converter = Converter(fmt, w, h)
        self._events = v4l2.subscribe_client_usage(fd)
        self._viewers = None
        self.write_image(placeholder(w, h))
        log.info(
            "virtual camera %s (%s, v4l2loopback %s): %s %dx%d at %s fps%s",
            path,
            cap.card,
            self.driver_version,
            fmt.fourcc,
            w,
            h,
            rate,
            "" if self._events else "; this driver cannot tell whether anyone watches",
        )

    def _no_output_reason(self, fd: int, path: Path, cap: v4l2.Capability) -> str:
        """Why a loopback node offers no output (with exclusive_caps=1), and the fix."""
        if v4l2.get_control(fd, v4l2.CID_KEEP_FORMAT) == 1:
            pinned = ""
            try:  # e.g. "YUYV:320x240@10"; G_FMT is refused in this state
                text = (Path("/sys/class/video4linux") / path.resolve().name / "format").read_text()
                pinned = f" ({text.strip().replace(':', ' ')})" if text.strip() else ""
            except OSError:
                pass
            return (
                f"{path} ({cap.card}) keeps the format of an earlier program{pinned} because "
                "its keep_format control is on, and then accepts no new writer. Turn it off "
                f"with `v4l2-ctl -d {path} -c keep_format=0` (after stopping any program "
                "still writing to it)."
            )
        if not cap.caps & v4l2.CAP_VIDEO_CAPTURE:
            return (
                f"{path} ({cap.card}) accepts neither output nor capture: v4l2loopback 0.12 "
                "and older get stuck like this after a program wrote to the device without "
                "streaming (ffmpeg, for one) and closed it. Reload the module: "
                f"`sudo modprobe -r v4l2loopback`, then `{MODPROBE}` (0.13 and newer do not "
                "have this problem)."
            )
        return (
            f"{path} ({cap.card}) does not accept output right now: another program is "
            f"already writing to it (`fuser -v {path}` shows which). Stop that program or "
            "use another device."
        )

    def _substituted(self, fd: int, path: Path, w: int, h: int, got: v4l2.PixFormat) -> str:
        """The message for a driver that set another format than the one asked for."""
        fmt = self.pixel_format
        head = (
            f"{path} cannot take {fmt.fourcc} {w}x{h}: the driver set {got.fourcc} "
            f"{got.width}x{got.height} instead, and mattecam refuses to write mismatched frames."
        )
        if v4l2.get_control(fd, v4l2.CID_KEEP_FORMAT) == 1:
            return (
                f"{head} Its keep_format control is on, so it keeps an earlier program's format: "
                f"match it, or turn it off with `v4l2-ctl -d {path} -c keep_format=0`."
            )
        if (got.width, got.height) != (w, h) and got.width <= w and got.height <= h:
            return (
                f"{head} v4l2loopback limits the size (module options max_width and "
                f"max_height): use at most --width {got.width} --height {got.height}, or "
                "reload the module with larger limits."
            )
        return (
            f"{head} Another program may have fixed the device's format (a reader still "
            "holding it, or v4l2loopback-ctl set-caps); close it, or use --output-format yuyv "
            "(the most widely supported), i420, nv12 or rgb24."
        )

    # --- writing -------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        t = time.perf_counter()
        self.write_image(frame.image, timings=frame.timings, t0=t)

    def write_image(
        self, picture: Picture, *, timings: dict[str, float] | None = None, t0: float = 0.0
    ) -> None:
        """Convert and write one picture, I420 or BGR (exactly one frame's bytes); the
        ``convert`` stage is the time from ``t0`` to the converted bytes (next to nothing
        for an I420 picture to an I420 device, which writes the picture's own buffer)."""
        if self._fd is None or self._converter is None:
            raise SinkError("the virtual camera is not open")
        data = self._converter.convert(picture)
        if timings is not None:
            timings["convert"] = (time.perf_counter() - t0) * 1e3
        try:
            written = os.write(self._fd, data.data)
        except OSError as e:
            raise SinkError(f"writing to {self.device} failed: {e.strerror}") from e
        if written != data.nbytes:
            raise SinkError(f"short write to {self.device}: {written} of {data.nbytes} bytes")
        self.frames_written += 1

    # --- viewers -------------------------------------------------------------------------

    @property
    def viewers(self) -> int | None:
        """How many programs are reading the virtual camera; None if the driver can't say.

        Reads pending client-usage events without blocking; called from the output thread.
        """
        if not self._events or self._fd is None:
            return None
        while (count := v4l2.dequeue_client_usage(self._fd)) is not None:
            self._viewers = count
        return self._viewers

    # --- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._streaming:
            try:
                v4l2.stream(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, False)
            except OSError as e:
                log.debug("STREAMOFF on %s: %s", self.device, e.strerror)
            self._streaming = False
        os.close(fd)
        self._converter = None
        log.info("virtual camera %s released", self.device)

    def describe(self) -> str:
        return f"virtual camera {self.device or self.device_spec} ({self.pixel_format.fourcc})"
