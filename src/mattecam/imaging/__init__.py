"""Pixel helpers every stage may use: resizing, placeholder pictures, video decoding."""

from mattecam.imaging.placeholder import placeholder
from mattecam.imaging.resize import cover_fit, shrink
from mattecam.imaging.video import open_container, to_bgr

__all__ = ["cover_fit", "open_container", "placeholder", "shrink", "to_bgr"]
