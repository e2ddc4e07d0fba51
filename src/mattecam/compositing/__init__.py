"""Backgrounds and compositing of the person over them."""

from mattecam.compositing.backgrounds import (
    Background,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    NoBackground,
    VideoBackground,
    make_background,
    parse_color,
)
from mattecam.compositing.blend import Compositor

__all__ = [
    "Background",
    "BlurBackground",
    "ColorBackground",
    "Compositor",
    "ImageBackground",
    "NoBackground",
    "VideoBackground",
    "make_background",
    "parse_color",
]
