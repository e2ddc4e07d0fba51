"""Frame sources: cameras and video files."""

from __future__ import annotations

from mattecam.sources.base import Source
from mattecam.sources.camera import CameraSource, camera_path
from mattecam.sources.file import FileSource
from mattecam.specs import InputSpec


def make_source(
    spec: InputSpec | str,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    loop: bool = False,
    realtime: bool = False,
    camera_format: str = "auto",
) -> Source:
    """A source for an input spec (or ``-i`` text, parsed first): a camera device, or a
    video file. ``fps`` and ``camera_format`` are what is asked of a camera; ``loop`` and
    ``realtime`` (paced by its own frame rate) apply to a file."""
    if isinstance(spec, str):
        spec = InputSpec.parse(spec)
    if spec.is_camera:
        return CameraSource(spec.path, size=size, fps=fps, pixel_format=camera_format)
    return FileSource(spec.path, realtime=realtime, loop=loop, size=size)


__all__ = ["CameraSource", "FileSource", "Source", "camera_path", "make_source"]
