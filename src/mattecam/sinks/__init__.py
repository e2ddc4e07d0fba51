"""Outputs: virtual cameras (v4l2loopback, PipeWire), files, a preview, null, the newest frame.

Every sink takes a frame whose picture is I420 (what the pipeline hands over) or BGR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mattecam.sinks.base import Sink
from mattecam.sinks.convert import FORMATS, Converter, PixelFormat, pixel_format
from mattecam.sinks.file import FileSink
from mattecam.sinks.latest import LatestFrameSink
from mattecam.sinks.null import NullSink
from mattecam.sinks.pipewire import PipeWireSink
from mattecam.sinks.preview import PreviewSink
from mattecam.sinks.v4l2loopback import V4L2LoopbackSink
from mattecam.specs import OutputSpec


def _null(spec: OutputSpec, output_format: str) -> Sink:
    return NullSink(pixel_format(spec.target) if spec.target else None)


def _camera(spec: OutputSpec, output_format: str) -> Sink:
    return V4L2LoopbackSink(spec.target, pixel_format(output_format))


def _pipewire(spec: OutputSpec, output_format: str) -> Sink:
    return PipeWireSink(spec.target or "mattecam", spec.label or "mattecam")


def _file(spec: OutputSpec, output_format: str) -> Sink:
    return FileSink(Path(spec.target))


#: Output kind -> factory (the spec, the virtual camera's pixel format). A new kind of
#: output is a :class:`Sink` subclass, one entry here, and its parsing in
#: :class:`~mattecam.specs.OutputSpec`.
SINKS: dict[str, Callable[[OutputSpec, str], Sink]] = {
    "null": _null,
    "camera": _camera,
    "file": _file,
    "pipewire": _pipewire,
}


def make_sink(spec: OutputSpec | str, *, output_format: str = "yuyv") -> Sink:
    """A sink for an output spec (or ``-o`` text, parsed first): ``null``, ``null:FORMAT``
    (convert, then discard), a v4l2loopback device (``/dev/videoN``, or ``auto`` for the
    first one) written in ``output_format``, a PipeWire camera (``pipewire``,
    ``pipewire:NAME``, ``pipewire:NAME:DESCRIPTION``; the consumer picks its format), or a
    video file path (.mp4, .mkv, .mov, .webm).

    Raises:
        ConfigError: text that names no known kind of output, or an unknown pixel format.
    """
    if isinstance(spec, str):
        spec = OutputSpec.parse(spec)
    return SINKS[spec.kind](spec, output_format)


__all__ = [
    "FORMATS",
    "SINKS",
    "Converter",
    "FileSink",
    "LatestFrameSink",
    "NullSink",
    "PipeWireSink",
    "PixelFormat",
    "PreviewSink",
    "Sink",
    "V4L2LoopbackSink",
    "make_sink",
    "pixel_format",
]
