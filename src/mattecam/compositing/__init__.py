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
from mattecam.compositing.blend import Blender, light_wrap

__all__ = [
    "Background",
    "Blender",
    "BlurBackground",
    "ColorBackground",
    "ImageBackground",
    "NoBackground",
    "VideoBackground",
    "light_wrap",
    "make_background",
    "parse_color",
]
