"""Frame sources: cameras and video files."""

from __future__ import annotations

from pathlib import Path

from mattecam.sources.base import Source
from mattecam.sources.camera import CameraSource, camera_path
from mattecam.sources.file import FileSource


def make_source(
    spec: str,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    loop: bool = False,
    realtime: bool = False,
    camera_format: str = "auto",
) -> Source:
    """A source for ``-i``: a camera index (``0``), a device (``/dev/video0``) or a video file."""
    device = camera_path(spec)
    if device is not None:
        return CameraSource(device, size=size, fps=fps, pixel_format=camera_format)
    return FileSource(Path(spec).expanduser(), realtime=realtime, loop=loop, size=size)


__all__ = ["CameraSource", "FileSource", "Source", "camera_path", "make_source"]
