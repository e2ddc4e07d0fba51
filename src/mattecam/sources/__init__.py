"""Frame sources: cameras and video files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mattecam.sources.base import Source
from mattecam.sources.camera import CameraSource, camera_path
from mattecam.sources.file import FileSource
from mattecam.specs import InputSpec


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How to open a source: ``size`` (width, height) to deliver, None for the input's;
    ``fps`` and ``camera_format`` are asked of a camera; ``loop`` and ``realtime`` (paced
    by its own frame rate) apply to a file."""

    size: tuple[int, int] | None = None
    fps: float | None = None
    loop: bool = False
    realtime: bool = False
    camera_format: str = "auto"


def _camera(spec: InputSpec, o: SourceOptions) -> Source:
    return CameraSource(spec.path, size=o.size, fps=o.fps, pixel_format=o.camera_format)


def _file(spec: InputSpec, o: SourceOptions) -> Source:
    return FileSource(spec.path, realtime=o.realtime, loop=o.loop, size=o.size)


#: Input kind -> factory. A new kind of input is a :class:`Source` subclass, one entry here,
#: and its parsing in :class:`~mattecam.specs.InputSpec`.
SOURCES: dict[str, Callable[[InputSpec, SourceOptions], Source]] = {
    "camera": _camera,
    "file": _file,
}


def make_source(
    spec: InputSpec | str,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    loop: bool = False,
    realtime: bool = False,
    camera_format: str = "auto",
) -> Source:
    """A source for an input spec (or ``-i`` text, parsed first); see :class:`SourceOptions`."""
    if isinstance(spec, str):
        spec = InputSpec.parse(spec)
    options = SourceOptions(size, fps, loop, realtime, camera_format)
    return SOURCES[spec.kind](spec, options)


__all__ = [
    "SOURCES",
    "CameraSource",
    "FileSource",
    "Source",
    "SourceOptions",
    "camera_path",
    "make_source",
]
