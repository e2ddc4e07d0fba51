"""Video file output with PyAV: H.264 in MP4/MKV/MOV, VP9 in WebM."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from mattecam.errors import SinkError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.sinks.base import Sink

log = logging.getLogger(__name__)

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9"}


class FileSink(Sink):
    """Writes frames to a video file at a constant frame rate, one frame per :meth:`write`.

    The file is written under a temporary name in the same directory and renamed into place
    by :meth:`close`, so a crash or an error never leaves a half-written file under the
    requested name; :meth:`abort` deletes the temporary file.
    """

    def __init__(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in CODECS:
            raise UnsupportedFormatError(
                f"cannot write {path}: unsupported file type {suffix or '(none)'}; use one of "
                f"{', '.join(CODECS)}."
            )
        self.path = path
        self._tmp: Path | None = None
        self._container: Any = None
        self._stream: Any = None

    def open(self, size: tuple[int, int], fps: float) -> None:
        import av

        parent = self.path.parent
        if not parent.is_dir():
            raise SinkError(f"cannot write {self.path}: directory {parent} does not exist.")
        if self.path.is_dir():
            raise SinkError(f"cannot write {self.path}: it is a directory.")
        tmp = parent / f".{self.path.stem}.partial-{os.getpid()}{self.path.suffix}"
        try:
            # Create the file now: FFmpeg opens it lazily, and an unwritable location must
            # fail here, before the camera is opened, not after the first frame.
            tmp.open("xb").close()
            self._tmp = tmp
            self._container = av.open(str(tmp), mode="w")
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise SinkError(
                f"cannot write {self.path}: {e}. Choose a writable location with -o."
            ) from e
        w, h = size
        rate = Fraction(fps).limit_denominator(1001)
        codec = CODECS[self.path.suffix.lower()]
        stream = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        # 4:2:0 needs even dimensions; odd sizes keep full chroma instead.
        stream.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "20"}
        else:
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b:v": "0"}
        self._stream = stream
        self._size = size
        log.info("writing %s (%s, %dx%d at %s fps)", self.path, codec, w, h, rate)

    def write(self, frame: Frame) -> None:
        import av

        if self._stream is None:
            raise SinkError("FileSink.write() before open()")
        vf = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
        vf.pts = self.frames_written
        try:
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as e:
            raise SinkError(f"writing {self.path} failed: {e}") from e
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self.frames_written == 0:
            log.warning("no frames were written; not creating %s", self.path)
            self.abort()
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except Exception as e:
            self.abort()
            raise SinkError(f"finishing {self.path} failed: {e}") from e
        self._container = self._stream = None
        if self._tmp is not None:
            self._tmp.replace(self.path)
            self._tmp = None
        log.info("wrote %d frames to %s", self.frames_written, self.path)

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already failing; removing the file is what matters
                log.debug("closing %s after an error failed", self._tmp, exc_info=True)
            self._container = self._stream = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def describe(self) -> str:
        return f"file {self.path}"
