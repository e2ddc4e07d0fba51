"""Video files decoded with PyAV (FFmpeg), optionally paced by their own frame rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mattecam.errors import SourceError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.imaging import open_container
from mattecam.imaging.video import to_i420
from mattecam.imaging.yuv import I420, fit
from mattecam.sources.base import Source, delivered_size

log = logging.getLogger(__name__)

#: How far short of its announced length a file may end without a warning: in frames for
#: an exact frame count, and at least this many seconds for a duration.
SHORT_FRAMES = 2
SHORT_SECONDS = 1.0


def announced_duration(container: Any, stream: Any) -> float | None:
    """Seconds of video the file announces: the stream's duration, else the container's
    (Matroska and WebM give only the latter); None when it announces neither."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE units
    return None


class FileSource(Source):
    """Frames of a video file.

    Args:
        path: the file.
        realtime: pace frames by their timestamps (live mode); otherwise as fast as decoded.
        loop: start again at the end instead of ending.
        size: (width, height) to deliver; frames are scaled to cover it and centre-cropped.
            None keeps the file's size.

    Frames are limited-range I420 (see :func:`~mattecam.imaging.video.to_i420`): the
    decoder's 4:2:0 planes as they are for nearly every video. A file with an odd side is
    delivered one column or row smaller, with one warning (4:2:0 needs even sides).

    A file that ends before the length its container announces (a truncated download, a
    damaged copy) is played as far as it goes, with one warning that says so; a decoding
    error after the first frame ends the input the same way rather than losing the frames
    already read. :attr:`truncated` then tells the caller, for its end summary.
    """

    #: Frames the container announces: its frame count, else its duration times the frame
    #: rate (an estimate). None when it announces neither. Set by :meth:`open`.
    expected_frames: int | None = None
    #: Whether the input ended early (before its announced length, or at a decoding
    #: error). Set from the reading thread when the input ends; read it after reading stops.
    truncated: bool = False

    def __init__(
        self,
        path: Path,
        *,
        realtime: bool = False,
        loop: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.live = realtime
        self.loop = loop
        self._want_size = size
        self._container: Any = None
        self._frames: Iterator[tuple[I420, float | None]] | None = None
        self._pending: tuple[I420, float | None] | None = None
        self._coded = (0, 0)  # the last decoded frame's size, before rounding to even
        self._seq = 0
        self._t0 = 0.0
        self._offset = 0.0  # media time added for each loop
        self._last_pts = 0.0
        self._duration: float | None = None

    def open(self) -> None:
        self._container = open_container(self.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.frame_count = int(stream.frames) or None
        self._duration = announced_duration(self._container, stream)
        self.expected_frames = self.frame_count
        if self.expected_frames is None and self._duration is not None:
            self.expected_frames = round(self._duration * self.fps)
        self.truncated = False
        self._frames = self._decode()
        try:
            first = next(self._frames, None)
        except BaseException:
            self.close()
            raise
        if first is None:
            self.close()
            raise UnsupportedFormatError(
                f"{self.path} contains no video frames (empty or damaged file)."
            )
        self._pending = first
        w, h = self._coded
        log.info("input %s: %dx%d at %.3g fps", self.path, w, h, self.fps)
        self.size = delivered_size(self._want_size, (w, h), self.path)

    def _decode(self) -> Iterator[tuple[I420, float | None]]:
        import av

        container = self._container
        stream = container.streams.video[0]
        while True:
            got = 0
            end: float | None = None  # media time of the last frame decoded
            error: Exception | None = None
            try:
                for vf in container.decode(stream):
                    self._coded = (vf.width, vf.height)
                    image = to_i420(vf)
                    got += 1
                    end = float(vf.time) if vf.time is not None else None
                    yield image, end
            except av.error.FFmpegError as e:
                # Cut or damaged data (InvalidDataError mid-stream; FFmpeg cannot tell which):
                # end here and keep what was read. Raising would make the pipeline abort and
                # delete an output holding every good frame.
                if not got:
                    raise SourceError(f"error decoding {self.path}: {e}") from e
                error = e
            except Exception as e:
                raise SourceError(f"error decoding {self.path}: {e}") from e
            self._check_length(got, end, error)
            if not (got and self.loop):
                return
            container.seek(0)
            self._offset = self._last_pts + 1.0 / self.fps

    def _check_length(self, got: int, end: float | None, error: Exception | None) -> None:
        """At the end of one pass over the file: warn (once) if it ended early.

        Announced lengths of intact files are off by a frame or two (edit lists, rounding),
        and a container's duration also covers its other streams (audio may run a little
        longer), hence the slack: a warning on a good file would teach users to ignore it.
        """
        stream = self._container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        covered = (end - start + 1.0 / self.fps) if end is not None else got / self.fps
        if error is not None:
            short = True
        elif self.frame_count is not None:
            short = got < self.frame_count - SHORT_FRAMES
        elif self._duration is not None:
            short = covered < self._duration - max(SHORT_FRAMES / self.fps, SHORT_SECONDS)
        else:
            short = False
        if not short or self.truncated:
            return
        self.truncated = True
        if self.frame_count is not None:
            what = f"{got} of {self.frame_count} frames"
        elif self._duration is not None:
            what = f"{got} frames ({covered:.1f} of {self._duration:.1f} s)"
        else:
            what = f"{got} frames"
        why = f" (decoding failed: {error})" if error is not None else ""
        then = "looping over" if self.loop else "the output holds"
        log.warning(
            "%s ended after %s%s: the file looks truncated or damaged; %s the %d frames read",
            self.path,
            what,
            why,
            then,
            got,
        )

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError("FileSource.read() before open()")
        t = time.perf_counter()
        item = self._pending or next(self._frames, None)
        self._pending = None
        if item is None:
            return None
        image, pts = item
        if image.size != self.size:
            image = fit(image, *self.size)
        decode_ms = (time.perf_counter() - t) * 1e3
        media_t = self._offset + (pts if pts is not None else self._seq / self.fps)
        self._last_pts = media_t
        if self.live:
            now = time.monotonic()
            if self._seq == 0:
                self._t0 = now - media_t
            delay = self._t0 + media_t - now
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:
                # Far behind (after a pause, or a slow reader): re-anchor instead of bursting.
                self._t0 = now - media_t
        frame = Frame(image=image, seq=self._seq, t_capture=time.monotonic(), pts=media_t)
        frame.timings["decode"] = decode_ms
        self._seq += 1
        return frame

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def describe(self) -> str:
        return f"file {self.path}: {self.size[0]}x{self.size[1]} at {self.fps:.3g} fps"
