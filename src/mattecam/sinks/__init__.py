"""Outputs: video files, a preview window, the null sink (and the virtual camera)."""

from __future__ import annotations

from pathlib import Path

from mattecam.errors import ConfigError
from mattecam.sinks.base import Sink
from mattecam.sinks.convert import FORMATS, Converter, PixelFormat, pixel_format
from mattecam.sinks.file import CODECS, FileSink
from mattecam.sinks.null import NullSink
from mattecam.sinks.preview import PreviewSink


def make_sink(spec: str) -> Sink:
    """A sink for an ``-o`` value: ``null``, ``null:FORMAT`` (convert, then discard) or a
    video file path (.mp4, .mkv, .mov, .webm).

    Raises:
        ConfigError: the value names no known kind of output.
    """
    if spec == "null":
        return NullSink()
    if spec.startswith("null:"):
        return NullSink(pixel_format(spec.split(":", 1)[1]))
    if spec == "auto" or spec.startswith("/dev/video"):
        raise ConfigError(
            f"-o {spec}: writing to a v4l2loopback virtual camera is not available in this "
            "version of mattecam; write to a file (-o out.mp4) or use --preview."
        )
    path = Path(spec).expanduser()
    if path.suffix.lower() in CODECS:
        return FileSink(path)
    raise ConfigError(
        f"-o {spec}: unknown output; use 'null' or a video file ending in {', '.join(CODECS)}."
    )


__all__ = [
    "FORMATS",
    "Converter",
    "FileSink",
    "NullSink",
    "PixelFormat",
    "PreviewSink",
    "Sink",
    "make_sink",
    "pixel_format",
]
