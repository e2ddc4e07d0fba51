"""A user's choices (``-i``, ``-o``, ``-b``), parsed once where they enter into typed values.

The command line, the config file and the control API give text (or, for the API, JSON);
:class:`~mattecam.config.Settings` turns it into these frozen specs when it is built, and
every stage after that receives specs, never text. ``str(spec)`` renders a spec back to
the text a user would write, the one place that does. This module imports nothing heavy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mattecam.errors import ConfigError

#: Colour names ``-b`` accepts, as RGB.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "red": (255, 0, 0),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "magenta": (255, 0, 255),
}
#: File suffixes played as a looping background video; any other file is a picture.
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif"})
#: Video file types ``-o`` writes, with their encoder.
FILE_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9"}

BackgroundKind = Literal["blur", "none", "color", "image", "video"]
#: Every background kind, in the order help texts list them.
BACKGROUND_KINDS: tuple[BackgroundKind, ...] = ("image", "video", "blur", "none", "color")


def parse_color(text: str) -> tuple[int, int, int]:
    """``green``, ``#00ff00``, ``00ff00`` or ``0,255,0`` (RGB) -> a BGR triple.

    Raises:
        ConfigError: not a colour.
    """
    t = text.strip().lower()
    rgb: tuple[int, ...] | None = None
    if t in NAMED_COLORS:
        rgb = NAMED_COLORS[t]
    elif m := re.fullmatch(r"#?([0-9a-f]{6})", t):
        rgb = tuple(int(m.group(1)[i : i + 2], 16) for i in (0, 2, 4))
    elif re.fullmatch(r"\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}", t):
        rgb = tuple(int(v) for v in t.split(","))
    if rgb is None or any(v > 255 for v in rgb):
        raise ConfigError(
            f"{text!r} is not a colour: use a name ({', '.join(NAMED_COLORS)}), #RRGGBB or R,G,B."
        )
    r, g, b = rgb
    return b, g, r


@dataclass(frozen=True, slots=True)
class BackgroundSpec:
    """What goes behind the person (``-b``).

    ``color`` (BGR) is set for the kind ``color`` only, ``path`` for ``image`` and
    ``video`` only. Whether the file exists is checked when the background is built.
    """

    kind: BackgroundKind
    color: tuple[int, int, int] | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> BackgroundSpec:
        """``blur``, ``none`` (or ``off``), a picture or video path, or a colour.

        A bare word that is no file is a colour; anything that names a file, has a suffix
        or a slash is a path (so a typo in a file name says "does not exist", not "not a
        colour").

        Raises:
            ConfigError: neither a path nor a colour.
        """
        s = text.strip()
        low = s.lower()
        if low == "blur":
            return cls("blur")
        if low in ("none", "off"):
            return cls("none")
        path = Path(s).expanduser()
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return cls("video", path=path)
        if path.exists() or path.suffix or "/" in s:
            return cls("image", path=path)
        try:
            return cls("color", color=parse_color(s))
        except ConfigError:
            raise ConfigError(
                f"background {text!r} is neither a file nor a colour: give an image or video "
                "path, a colour (green, #RRGGBB, R,G,B), 'blur' or 'none'."
            ) from None

    @classmethod
    def of_color(cls, bgr: tuple[int, int, int]) -> BackgroundSpec:
        """A flat colour, BGR."""
        return cls("color", color=bgr)

    @classmethod
    def of_file(cls, path: Path) -> BackgroundSpec:
        """A picture or, by its suffix, a video."""
        kind: BackgroundKind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        return cls(kind, path=path)

    def __str__(self) -> str:
        if self.kind == "color":
            b, g, r = self.color or (0, 0, 0)
            return f"#{r:02x}{g:02x}{b:02x}"
        if self.path is not None:
            return str(self.path)
        return self.kind


@dataclass(frozen=True, slots=True)
class InputSpec:
    """Where frames come from (``-i``): a camera device, or a video file."""

    kind: Literal["camera", "file"]
    path: Path

    @classmethod
    def parse(cls, text: str | int) -> InputSpec:
        """``0`` or ``/dev/video0`` is a camera; anything else a video file."""
        t = str(text).strip()
        if re.fullmatch(r"\d+", t):
            return cls("camera", Path(f"/dev/video{int(t)}"))
        if re.fullmatch(r"/dev/video\d+", t):
            return cls("camera", Path(t))
        return cls("file", Path(t).expanduser())

    @property
    def is_camera(self) -> bool:
        return self.kind == "camera"

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Where composited frames go (``-o``).

    * ``camera``: a v4l2loopback virtual camera, ``target`` ``/dev/videoN`` or ``auto``;
    * ``file``: a video file, ``target`` its path (its suffix picks the codec);
    * ``null``: discarded, ``target`` empty or a pixel format to convert to first;
    * ``pipewire``: a PipeWire camera node, ``target`` its node name (empty: ``mattecam``)
      and ``label`` the description apps show (empty: ``mattecam``).
    """

    kind: Literal["camera", "file", "null", "pipewire"]
    target: str = ""
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> OutputSpec:
        """``null``, ``null:FORMAT``, ``auto``, ``/dev/videoN``, ``pipewire``,
        ``pipewire:NAME``, ``pipewire:NAME:DESCRIPTION`` (NAME may be empty; DESCRIPTION
        is free text) or a video file path.

        Raises:
            ConfigError: none of these (a file of an unknown type, say).
        """
        t = text.strip()
        if t == "null":
            return cls("null")
        if t.startswith("null:"):
            return cls("null", t.split(":", 1)[1])
        if t == "auto" or re.fullmatch(r"/dev/video\d+", t):
            return cls("camera", t)
        if t == "pipewire" or t.startswith("pipewire:"):
            name, colon, label = t.partition(":")[2].partition(":")
            name_required = t != "pipewire" and not colon  # "pipewire:" names nothing
            if (name or name_required) and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ConfigError(
                    f"-o {text}: a PipeWire node name is letters, digits, '.', '_' or '-' "
                    "(e.g. -o pipewire:mattecam)."
                )
            label = label.strip()
            if colon and (not label or len(label) > 100 or not label.isprintable()):
                raise ConfigError(
                    f"-o {text}: the description after the second ':' is the camera's name "
                    "in apps: 1 to 100 printable characters "
                    "(e.g. -o 'pipewire:office:Office camera')."
                )
            return cls("pipewire", name, label)
        path = Path(t).expanduser()
        if path.suffix.lower() in FILE_CODECS:
            return cls("file", str(path))
        raise ConfigError(
            f"-o {text}: unknown output; use a virtual camera (/dev/videoN or auto), a "
            "PipeWire camera (pipewire or pipewire:NAME), 'null', "
            f"or a video file ending in {', '.join(FILE_CODECS)}."
        )

    @property
    def path(self) -> Path | None:
        """The file or device written, when known before opening (not for ``auto``)."""
        if self.kind == "file" or (self.kind == "camera" and self.target != "auto"):
            return Path(self.target)
        return None

    def __str__(self) -> str:
        if self.kind == "null":
            return f"null:{self.target}" if self.target else "null"
        if self.kind == "pipewire":
            if self.label:
                return f"pipewire:{self.target}:{self.label}"
            return f"pipewire:{self.target}" if self.target else "pipewire"
        return self.target
