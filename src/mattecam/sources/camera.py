"""V4L2 cameras through OpenCV, negotiating MJPEG for HD as real webcams need.

OpenCV only reads the device: its BGR conversion is turned off (``CAP_PROP_CONVERT_RGB``
0), and the raw MJPEG or YUYV buffer becomes an I420 frame here (libyuv when present), which
skips a full-size BGR picture and its conversion back to YUV. A camera whose raw buffers
are not what they should be falls back to OpenCV's BGR, converted once.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mattecam.errors import ConfigError, InputNotFoundError, SourceError
from mattecam.frame import Frame
from mattecam.imaging import libyuv
from mattecam.imaging.yuv import I420, fit, unpack_yuyv
from mattecam.sources.base import Source, delivered_size
from mattecam.sources.mjpeg import decode_jpeg
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


#: Undecodable frames in a row (a corrupt JPEG, as USB cameras send when the bus is short
#: of bandwidth) that :meth:`CameraSource.read` drops before it gives the camera up.
CORRUPT_LIMIT = 10
#: Raw frames tried at open before falling back to OpenCV's BGR (the first frames after a
#: camera starts streaming may be cut short).
RAW_TRIES = 3
MJPEG_FOURCCS = ("MJPG", "JPEG")
YUYV_FOURCCS = ("YUYV", "YUY2")


def _fourcc_str(value: float) -> str:
    v = int(value)
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)).strip("\0")


def raw_to_i420(raw: NDArray[np.uint8], fourcc: str, width: int, height: int) -> I420:
    """A frame as OpenCV's V4L2 backend returns it with ``CAP_PROP_CONVERT_RGB`` off, as a
    limited-range I420 picture of the negotiated ``width`` x ``height`` (an odd side
    rounded down).

    ``MJPG``/``JPEG``: the JPEG bytes in one row, perhaps followed by padding (decoded with
    :func:`~mattecam.sources.mjpeg.decode_jpeg`). ``YUYV``/``YUY2``: ``width * height * 2``
    bytes, shaped (height, width, 2) or flat (chroma rows averaged in pairs by
    :func:`~mattecam.imaging.yuv.unpack_yuyv`).

    Raises:
        SourceError: ``raw`` is not such a frame: a corrupt JPEG, a JPEG of another size,
            a YUYV buffer of the wrong length, or a format read here is not.
    """
    if fourcc in MJPEG_FOURCCS:
        pic = decode_jpeg(raw)
        want = (width - width % 2, height - height % 2)
        if pic.size != want:
            raise SourceError(
                f"the camera sent a {pic.width}x{pic.height} JPEG for a {width}x{height} frame"
            )
        return pic
    if fourcc in YUYV_FOURCCS:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise SourceError(f"a {width}x{height} YUYV frame cannot be 4:2:0")
        if raw.size != width * height * 2:
            raise SourceError(
                f"the camera sent {raw.size} bytes for a {width}x{height} YUYV frame "
                f"({width * height * 2} expected)"
            )
        return unpack_yuyv(raw, width, height)
    raise SourceError(f"raw {fourcc or 'unknown'} frames are not read here")


def _from_bgr(image: NDArray[np.uint8]) -> I420:
    """OpenCV's BGR frame (the fallback path) as I420, an odd side cropped."""
    h, w = image.shape[:2]
    return I420.from_bgr(image[: h - h % 2, : w - w % 2])


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
    hands on is always the newest one. Frames are decoded from the raw buffer
    (:func:`raw_to_i420`) when the first one reads as it should, else converted from
    OpenCV's BGR; :attr:`raw` says which, and the log says why.
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
        #: Whether frames are decoded from the raw buffer (else OpenCV converts to BGR).
        self.raw = False
        self._native = (0, 0)
        self._corrupt = 0  # undecodable frames dropped since open

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
        raw = bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        image = self._first_frame(cap)
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or float(self._want_fps or 30.0)
        self.fourcc = _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))
        self._native = (got_w, got_h)
        why = self._raw_problem(cap, image) if raw else "OpenCV would not hand over raw buffers"
        if raw and why is not None:
            raw = False
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
            self._first_frame(cap)
        self.raw = raw
        self._cap = cap
        self._corrupt = 0
        self.size = delivered_size(self._want_size, (got_w, got_h), f"camera {self.device}")
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
        if raw:
            decoder = "libyuv" if libyuv.available() else "OpenCV/simplejpeg"
            log.info(
                "camera %s: raw %s frames decoded to I420 (%s)", self.device, self.fourcc, decoder
            )
        else:
            log.info(
                "camera %s: raw %s frames unusable (%s); OpenCV converts them to BGR",
                self.device,
                self.fourcc,
                why,
            )

    def _raw_problem(self, cap: Any, image: Any) -> str | None:
        """Why raw frames cannot be read (the last of :data:`RAW_TRIES` frames' error),
        or None when one of them decodes."""
        why = None
        for attempt in range(RAW_TRIES):
            if attempt:
                image = self._first_frame(cap)
            try:
                raw_to_i420(np.asarray(image, np.uint8), self.fourcc, *self._native)
            except SourceError as e:
                why = str(e)
            else:
                return None
        return why

    def _first_frame(self, cap: Any) -> Any:
        """The camera's next frame; releases it and raises when there is none."""
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            raise SourceError(
                f"camera {self.device} opened but delivered no frame. Another program may be "
                "using it, or it does not support the requested format; try --camera-format "
                "yuyv or a smaller --width/--height."
            )
        return image

    def read(self) -> Frame | None:
        """The camera's next frame. Its ``decode`` timing is the decoding and scaling of the
        raw buffer; on the BGR path, where OpenCV decodes inside ``read``, it also covers
        the wait for the frame. A corrupt frame is dropped (one warning); only
        :data:`CORRUPT_LIMIT` of them in a row end the input."""
        if self._cap is None:
            raise SourceError("CameraSource.read() before open()")
        error: SourceError | None = None
        for _ in range(CORRUPT_LIMIT):
            t = time.perf_counter()
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceError(
                    f"camera {self.device} stopped delivering frames (unplugged or taken by "
                    "another program)."
                )
            image = np.asarray(image, np.uint8)
            try:
                if self.raw:
                    t = time.perf_counter()
                    pic = raw_to_i420(image, self.fourcc, *self._native)
                else:
                    pic = _from_bgr(image)
            except SourceError as e:
                error = e
                self._corrupt += 1
                if self._corrupt == 1:
                    log.warning(
                        "camera %s: dropped an undecodable frame (%s); more are dropped silently",
                        self.device,
                        e,
                    )
                continue
            if pic.size != self.size:
                pic = fit(pic, *self.size)
            frame = Frame(image=pic, seq=self._seq, t_capture=time.monotonic())
            frame.timings["decode"] = (time.perf_counter() - t) * 1e3
            self._seq += 1
            return frame
        raise SourceError(
            f"camera {self.device} sent {CORRUPT_LIMIT} undecodable frames in a row ({error}); "
            "try --camera-format yuyv or a smaller --width/--height."
        )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        return (
            f"camera {self.device}: {self.size[0]}x{self.size[1]} {self.fourcc} at {self.fps:g} fps"
        )
