"""The background library: uploaded pictures, checked by decoding, under server-chosen names."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mattecam.compositing.backgrounds import VIDEO_SUFFIXES
from mattecam.errors import ConfigError, InputNotFoundError, UnsupportedFormatError
from mattecam.frame import Image

log = logging.getLogger(__name__)

#: Largest upload accepted, in bytes.
MAX_UPLOAD = 20 * 1024 * 1024
#: Largest picture accepted, in pixels per side.
MAX_SIDE = 8192
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: A library entry's name: no directory part, no leading dot, nothing a shell or URL minds.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def sniff(data: bytes) -> str | None:
    """The file suffix for an upload's leading bytes (JPEG, PNG, WebP, BMP), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data.startswith(b"BM"):
        return ".bmp"
    return None


def decode_image(data: bytes) -> Image:
    """Decode an uploaded picture (JPEG, PNG, WebP or BMP) to BGR.

    Raises:
        UnsupportedFormatError: anything else, a damaged file, or a picture too large.
    """
    kind = sniff(data)
    image = None
    if kind is not None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnsupportedFormatError(
            "the upload is not a picture mattecam can read: send a JPEG, PNG, WebP or BMP image."
        )
    h, w = image.shape[:2]
    if max(w, h) > MAX_SIDE:
        raise UnsupportedFormatError(
            f"the picture is {w}x{h}; pictures up to {MAX_SIDE} pixels a side are accepted."
        )
    return np.asarray(image, np.uint8)


@dataclass(frozen=True)
class Entry:
    """One background in the library."""

    name: str
    kind: str  # "image" or "video"
    bytes: int


class Library:
    """The background files in one directory (by default ``$XDG_DATA_HOME/mattecam/
    backgrounds``).

    Clients name entries only by :attr:`Entry.name`, which is checked against :data:`NAME`
    and against the directory's listing; no client-supplied text is ever used as a path.
    Uploads are decoded before they are kept, stored under a name made from their content
    hash (so the same picture uploaded twice is one file), and written atomically. Safe from
    several request threads at once (a lock serialises writes).
    """

    def __init__(self, root: Path, *, max_upload: int = MAX_UPLOAD) -> None:
        self.root = root
        self.max_upload = max_upload
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """The images and videos in the library, by name."""
        found = []
        try:
            paths = sorted(self.root.iterdir())
        except OSError:
            return []
        for p in paths:
            kind = kind_of(p.name)
            if kind and NAME.fullmatch(p.name) and p.is_file():
                found.append(Entry(p.name, kind, p.stat().st_size))
        return found

    def path_of(self, name: str, kind: str | None = None) -> Path:
        """The file of entry ``name`` (of ``kind`` if given).

        Raises:
            ConfigError: not a valid entry name, or an entry of another kind.
            InputNotFoundError: no such entry.
        """
        if not isinstance(name, str) or not NAME.fullmatch(name) or kind_of(name) is None:
            raise ConfigError(f"{name!r} is not the name of a background in the library.")
        if kind is not None and kind_of(name) != kind:
            raise ConfigError(f"{name!r} is not an {kind}." if kind == "image" else
                              f"{name!r} is not a {kind}.")  # fmt: skip
        for entry in self.entries():
            if entry.name == name:
                return self.root / entry.name
        raise InputNotFoundError(f"there is no background {name!r} in the library.")

    def name_of(self, spec: str) -> str | None:
        """The entry name when the background ``spec`` is a file in the library."""
        try:
            path = Path(spec).expanduser().resolve()
        except (OSError, RuntimeError):
            return None
        if path.parent == self.root.resolve() and NAME.fullmatch(path.name):
            return path.name
        return None

    def store(self, data: bytes) -> Entry:
        """Check ``data`` is a picture and keep it; returns its entry.

        Raises:
            ConfigError: larger than :attr:`max_upload`.
            UnsupportedFormatError: not a picture (see :func:`decode_image`).
        """
        if len(data) > self.max_upload:
            raise ConfigError(f"the upload is larger than {self.max_upload} bytes.")
        decode_image(data)
        suffix = sniff(data) or ".img"
        name = f"bg-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
        target = self.root / name
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not target.is_file():
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    Path(tmp).replace(target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                log.info("stored uploaded background %s (%d bytes)", target, len(data))
        return Entry(name, "image", len(data))

    def thumbnail(self, name: str, width: int = 160) -> bytes:
        """A small JPEG of image entry ``name`` (for the page's picker)."""
        path = self.path_of(name, "image")
        data = np.fromfile(str(path), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise UnsupportedFormatError(f"{name} cannot be decoded.")
        h, w = image.shape[:2]
        small = cv2.resize(
            image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA
        )
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid BGR image
            raise UnsupportedFormatError(f"{name}: JPEG encoding failed")
        return bytes(jpeg)


def kind_of(name: str) -> str | None:
    """``image`` or ``video`` by a file name's suffix, else None."""
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None
