"""Outputs: video files, a preview window, the null sink (and the virtual camera)."""

from __future__ import annotations

import re
from pathlib import Path

from mattecam.errors import ConfigError
from mattecam.sinks.base import Sink
from mattecam.sinks.convert import FORMATS, Converter, PixelFormat, pixel_format
from mattecam.sinks.file import CODECS, FileSink
from mattecam.sinks.null import NullSink
from mattecam.sinks.preview import PreviewSink
from mattecam.sinks.v4l2loopback import V4L2LoopbackSink


def make_sink(spec: str, *, output_format: str = "yuyv") -> Sink:
    """A sink for an ``-o`` value: ``null``, ``null:FORMAT`` (convert, then discard), a
    v4l2loopback device (``/dev/videoN``, or ``auto`` for the first one) written in
    ``output_format``, or a video file path (.mp4, .mkv, .mov, .webm).

    Raises:
        ConfigError: the value names no known kind of output.
    """
    if spec == "null":
        return NullSink()
    if spec.startswith("null:"):
        return NullSink(pixel_format(spec.split(":", 1)[1]))
    if spec == "auto" or re.fullmatch(r"/dev/video\d+", spec):
        return V4L2LoopbackSink(spec, pixel_format(output_format))
    path = Path(spec).expanduser()
    if path.suffix.lower() in CODECS:
        return FileSink(path)
    raise ConfigError(
        f"-o {spec}: unknown output; use a virtual camera (/dev/videoN or auto), 'null', or a "
        f"video file ending in {', '.join(CODECS)}."
    )


__all__ = [
    "FORMATS",
    "Converter",
    "FileSink",
    "NullSink",
    "PixelFormat",
    "PreviewSink",
    "Sink",
    "V4L2LoopbackSink",
    "make_sink",
    "pixel_format",
]
