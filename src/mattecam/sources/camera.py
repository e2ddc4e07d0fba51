"""V4L2 cameras through OpenCV, negotiating MJPEG for HD as real webcams need."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mattecam.errors import ConfigError, InputNotFoundError, SourceError
from mattecam.frame import Frame
from mattecam.imaging import cover_fit
from mattecam.sources.base import Source, fill_size
from mattecam.specs import InputSpec

log = logging.getLogger(__name__)

CAMERA_FORMATS = ("auto", "mjpeg", "yuyv")
NO_CAMERA_HINT = (
    "List cameras with `mattecam devices` or `v4l2-ctl --list-devices`; if the device exists "
    "but cannot be opened, add yourself to the video group (`sudo usermod -aG video $USER`, "
    "then log in again) and close other programs using the camera."
)


def camera_path(spec: str | int) -> Path | None:
    """``0`` or ``/dev/video0`` -> the device path; anything else (a file) -> None."""
    parsed = InputSpec.parse(spec)
    return parsed.path if parsed.is_camera else None


def _fourcc_str(value: float) -> str:
    v = int(value)
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)).strip("\0")


class CameraSource(Source):
    """A V4L2 camera.

    Args:
        device: the device node, e.g. ``/dev/video0``.
        size: (width, height) to ask the camera for; frames are scaled to cover it (and
            centre-cropped) when the camera delivers another size. None takes its default.
        fps: frame rate to ask for (None: the camera's default).
        pixel_format: ``mjpeg`` (needed by most USB cameras for HD at 30 fps), ``yuyv``, or
            ``auto`` (MJPEG above 640x480).

    The capture thread drains the camera continuously (one driver buffer), so the frame it
    hands on is always the newest one.
    """

    live = True
    release_when_idle = True

    def __init__(
        self,
        device: Path,
        *,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        pixel_format: str = "auto",
    ) -> None:
        if pixel_format not in CAMERA_FORMATS:
            raise ConfigError(
                f"camera format {pixel_format!r} is not supported; use one of "
                f"{', '.join(CAMERA_FORMATS)}."
            )
        self.device = device
        self._want_size = size
        self._want_fps = fps
        self.pixel_format = pixel_format
        self._cap: Any = None
        self._seq = 0
        self.fourcc = ""

    def open(self) -> None:
        import cv2

        if not self.device.exists():
            raise InputNotFoundError(f"camera {self.device} does not exist. {NO_CAMERA_HINT}")
        if not os.access(self.device, os.R_OK | os.W_OK):
            raise SourceError(f"no permission to open camera {self.device}. {NO_CAMERA_HINT}")
        cap = cv2.VideoCapture(str(self.device), cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {self.device} could not be opened (busy, or not a capture device). "
                + NO_CAMERA_HINT
            )
        fmt = self.pixel_format
        if fmt == "auto":
            w, h = self._want_size or (640, 480)
            fmt = "mjpeg" if w * h > 640 * 480 else "yuyv"
        # FOURCC before size: a camera only offers HD sizes in MJPEG.
        cap.set(
            cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*("MJPG" if fmt == "mjpeg" else "YUYV"))
        )
        if self._want_size:
            if self._want_size[0]:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._want_size[0])
            if self._want_size[1]:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._want_size[1])
        if self._want_fps:
            cap.set(cv2.CAP_PROP_FPS, self._want_fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            raise SourceError(
                f"camera {self.device} opened but delivered no frame. Another program may be "
                "using it, or it does not support the requested format; try --camera-format "
                "yuyv or a smaller --width/--height."
            )
        self._cap = cap
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or float(self._want_fps or 30.0)
        self.fourcc = _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))
        self.size = fill_size(self._want_size, (got_w, got_h))
        asked = f"{self._want_size[0]}x{self._want_size[1]}" if self._want_size else "default size"
        log.info(
            "camera %s: %dx%d %s at %g fps (asked %s %s at %s fps)",
            self.device,
            got_w,
            got_h,
            self.fourcc,
            self.fps,
            asked,
            fmt.upper(),
            self._want_fps or "default",
        )

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError("CameraSource.read() before open()")
        t = time.perf_counter()
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(
                f"camera {self.device} stopped delivering frames (unplugged or taken by "
                "another program)."
            )
        decode_ms = (time.perf_counter() - t) * 1e3
        image = np.asarray(image, np.uint8)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cover_fit(image, *self.size)
        frame = Frame(image=image, seq=self._seq, t_capture=time.monotonic())
        frame.timings["decode"] = decode_ms
        self._seq += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        return (
            f"camera {self.device}: {self.size[0]}x{self.size[1]} {self.fourcc} at {self.fps:g} fps"
        )
