"""Video file output with PyAV: H.264 in MP4/MKV/MOV, VP9 in WebM."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

from mattecam.errors import InputNotFoundError, SinkError, UnsupportedFormatError
from mattecam.frame import Frame
from mattecam.imaging.yuv import I420
from mattecam.sinks.base import Sink
from mattecam.specs import FILE_CODECS

log = logging.getLogger(__name__)

CODECS = FILE_CODECS  # suffix -> encoder

#: FFmpeg's ``AVColorRange`` and ``AVColorSpace`` values for the frames' colours: limited
#: ("tv") range, BT.601 matrix.
AVCOL_RANGE_MPEG = 1
AVCOL_SPC_SMPTE170M = 6

#: Temporary files this process is writing now. A partial that carries our own PID but is
#: not listed here was left by an earlier process that had the same PID: it is stale.
_OWN_PARTIALS: set[Path] = set()


def partial_pattern(path: Path) -> re.Pattern[str]:
    """Names of the temporary files written for ``path``: ``.STEM.partial-PID-TOKEN.EXT``.

    The group is the writer's PID. The older form without ``-TOKEN`` matches too, so that
    partials left by earlier versions are cleaned as well.
    """
    stem, suffix = re.escape(path.stem), re.escape(path.suffix)
    return re.compile(rf"\.{stem}\.partial-([0-9]+)(?:-[0-9a-f]+)?{suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or not a PID we can judge: keep it
    return True


def remove_stale_partials(path: Path) -> None:
    """Delete temporary files of ``path`` left by processes that no longer run.

    A run killed by SIGKILL or a power loss cannot remove its partial file; the next run
    for the same output does. Only regular files whose name matches :func:`partial_pattern`
    exactly are considered, and those of running processes are left alone. Failures are
    logged, never raised: cleaning up must not make a valid run fail.
    """
    pattern = partial_pattern(path)
    try:
        with os.scandir(path.parent) as it:
            entries = list(it)
    except OSError as e:
        log.debug("cannot list %s for stale partial files: %s", path.parent, e)
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        candidate = path.parent / entry.name
        pid = int(m.group(1))
        if pid <= 0 or candidate in _OWN_PARTIALS:
            continue
        if pid != os.getpid() and _process_alive(pid):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            candidate.unlink()
        except OSError as e:
            log.debug("cannot remove stale partial file %s: %s", candidate, e)
        else:
            log.info("removed %s, left by an interrupted run (process %d)", candidate, pid)


def _create_partial(path: Path) -> Path:
    """Create an empty, new temporary file next to ``path`` and return its name.

    The name carries our PID (so a later run can tell whether we still run) and a random
    token, and is created exclusively: it never collides with another writer's file or with
    a stale one whose PID we happen to reuse. The mode follows the umask like any new file.
    """
    for _ in range(100):
        tmp = (
            path.parent / f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
        )
        # Listed before it exists, so that a concurrent cleanup never takes it for stale.
        _OWN_PARTIALS.add(tmp)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            _OWN_PARTIALS.discard(tmp)
            continue
        except BaseException:
            _OWN_PARTIALS.discard(tmp)
            raise
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


class FileSink(Sink):
    """Writes frames to a video file at a constant frame rate, one frame per :meth:`write`.

    The file is written under a temporary name in the same directory
    (``.NAME.partial-PID-TOKEN.EXT``) and renamed into place by :meth:`close`, so the
    requested name holds either a complete, playable file or nothing: a crash, an error or
    an interrupt (even one that lands while :meth:`close` finishes the file) never leaves a
    half-written file under it; :meth:`abort` deletes the temporary file. Partials left by
    killed processes (SIGKILL, power loss) are deleted by the next :meth:`open` of the same
    output.

    An existing output file is replaced, keeping its permission bits; a read-only one is
    refused by :meth:`open`. The video is 4:2:0 (H.264 High or VP9 profile 0, which every
    player opens); an odd width or height is written one pixel smaller (see :meth:`open`).

    Colour: BT.601 limited range, the pipeline's, tagged as such in the stream (``tv``,
    ``smpte170m``) so that players do not guess BT.709 for HD sizes. An I420 frame is
    handed to the encoder as it is; a BGR frame is converted with OpenCV (the conversion
    the virtual cameras use) rather than by swscale, which is both slower and less exact:
    it gave Y 125 instead of 126 for mid grey and 234 instead of 235 for white (decoded
    back: grey 128 as 123-126, white 255 as 250-253). Measured at 720p on 2 busy cores,
    handing a frame over costs ~1.5 ms with swscale, ~0.35 ms from BGR with OpenCV and
    ~0.17 ms from I420 (one copy into PyAV's frame); a whole write with x264's encode
    ~7.9, ~6.6 and ~6.4 ms.
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
        self._even = (0, 0)

    def open(self, size: tuple[int, int], fps: float) -> None:
        """Create the temporary file and the encoder for ``size`` frames at ``fps``.

        4:2:0 video needs an even width and height. An odd side loses its last column or
        row (with a warning) rather than being scaled: one edge pixel is invisible, costs
        nothing, and leaves every other pixel sharp, where scaling by 640/641 would resample
        (soften) the whole picture and cost a conversion per frame.
        """
        import av

        parent = self.path.parent
        if not parent.is_dir():
            raise InputNotFoundError(
                f"cannot write {self.path}: directory {parent} does not exist."
            )
        if self.path.is_dir():
            raise SinkError(f"cannot write {self.path}: it is a directory.")
        self._check_replaceable()
        w, h = size
        ew, eh = w - w % 2, h - h % 2
        if ew < 2 or eh < 2:
            raise SinkError(f"cannot write {self.path}: {w}x{h} is too small for a video.")
        remove_stale_partials(self.path)
        try:
            # Create the file now: FFmpeg opens it lazily, and an unwritable location must
            # fail here, before the camera is opened, not after the first frame.
            self._tmp = _create_partial(self.path)
            self._container = av.open(str(self._tmp), mode="w")
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise SinkError(
                f"cannot write {self.path}: {e}. Choose a writable location with -o."
            ) from e
        except BaseException:
            self.abort()
            raise
        try:
            rate = Fraction(fps).limit_denominator(1001)
            codec = CODECS[self.path.suffix.lower()]
            stream = self._container.add_stream(codec, rate=rate)
            stream.width, stream.height = ew, eh
            stream.pix_fmt = "yuv420p"
            # The frames' colours (see the class notes); the encoders write them into the
            # stream (H.264 VUI, VP9 colour config).
            stream.codec_context.color_range = AVCOL_RANGE_MPEG
            stream.codec_context.colorspace = AVCOL_SPC_SMPTE170M
            if codec == "libx264":
                stream.options = {"preset": "veryfast", "crf": "20"}
            else:
                stream.options = {
                    "deadline": "realtime",
                    "cpu-used": "8",
                    "crf": "32",
                    "b:v": "0",
                }
        except BaseException:
            self.abort()
            raise
        self._stream = stream
        self._size = size
        self._even = (ew, eh)
        if (ew, eh) != (w, h):
            log.warning(
                "%s: %dx%d is odd; writing %dx%d (H.264/VP9 4:2:0 needs even sizes)",
                self.path,
                w,
                h,
                ew,
                eh,
            )
        log.info("writing %s (%s, %dx%d at %s fps)", self.path, codec, ew, eh, rate)

    def _check_replaceable(self) -> None:
        """Refuse to replace an existing read-only file: the user protected it."""
        try:
            st = self.path.stat()
        except OSError:
            return  # absent (or unreadable: creating the temporary file will say why)
        if not stat.S_ISREG(st.st_mode):
            return
        # Root passes os.access() whatever the mode, so the mode bits are checked as well.
        if not os.access(self.path, os.W_OK) or st.st_mode & 0o222 == 0:
            raise SinkError(
                f"cannot write {self.path}: it is read-only; remove it or choose another -o."
            )

    def write(self, frame: Frame) -> None:
        import av

        if self._stream is None:
            raise SinkError("FileSink.write() before open()")
        ew, eh = self._even
        picture = frame.image
        if isinstance(picture, I420):
            if picture.size != (ew, eh):
                raise ValueError(f"expected a {ew}x{eh} picture, got {picture!r}")
            pic = picture.limited()
        else:
            if picture.shape[1] != ew or picture.shape[0] != eh:
                picture = picture[:eh, :ew]  # odd size: drop the last column / row (see open())
            pic = I420.from_bgr(picture)
        vf = av.VideoFrame.from_ndarray(pic.data, format="yuv420p")  # copies: pic stays ours
        vf.pts = self.frames_written
        try:
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as e:
            raise SinkError(f"writing {self.path} failed: {e}") from e
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and rename it into place.

        Whatever interrupts this (an error, or a KeyboardInterrupt from an impatient second
        Ctrl-C), the temporary file is removed and the exception propagates (errors as
        :class:`~mattecam.errors.SinkError`): the output is complete or absent, never partial.
        """
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
            self._container = self._stream = None
            if self._tmp is not None:
                self._keep_mode(self._tmp)
                self._tmp.replace(self.path)
                _OWN_PARTIALS.discard(self._tmp)
                self._tmp = None
        except Exception as e:
            self.abort()
            raise SinkError(f"finishing {self.path} failed: {e}") from e
        except BaseException:
            self.abort()
            raise
        log.info("wrote %d frames to %s", self.frames_written, self.path)

    def _keep_mode(self, tmp: Path) -> None:
        """Give ``tmp`` the permission bits of the file it is about to replace, if any."""
        try:
            st = self.path.stat()
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        try:
            tmp.chmod(stat.S_IMODE(st.st_mode) & 0o777)
        except OSError as e:  # e.g. a file system without modes: keep the file anyway
            log.debug("cannot copy the mode of %s to the new file: %s", self.path, e)

    def abort(self) -> None:
        """Close and delete the temporary file. The file is deleted even if closing is
        interrupted (the interrupt then propagates); a failure to delete is logged."""
        container = self._container
        self._container = self._stream = None
        try:
            if container is not None:
                try:
                    container.close()
                except Exception:  # already failing; removing the file is what matters
                    log.debug("closing %s after an error failed", self._tmp, exc_info=True)
        finally:
            tmp = self._tmp
            if tmp is not None:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError as e:
                    log.warning("cannot remove the partial file %s: %s", tmp, e)
                _OWN_PARTIALS.discard(tmp)
                self._tmp = None

    def discard_unfinished(self) -> None:
        """Unlink the temporary file, if any; safe from a signal handler (see
        :meth:`Sink.discard_unfinished`). A file already renamed into place is complete."""
        tmp = self._tmp
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def describe(self) -> str:
        return f"file {self.path}"
