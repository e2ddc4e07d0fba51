"""The background library: uploads checked (header, decode), kept under server-chosen names."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
#: Largest picture accepted, in pixels: 150 MB decoded (BGR), and room for a 50-megapixel
#: camera's 8160x6120 photos. Both limits are checked from the file's header, before decoding.
MAX_PIXELS = 50_000_000
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


class PictureTooLargeError(UnsupportedFormatError):
    """A picture whose header announces more pixels than :data:`MAX_SIDE` or
    :data:`MAX_PIXELS` allow."""


NOT_A_PICTURE = "send a JPEG, PNG, WebP or BMP image."
#: JPEG start-of-frame markers (they hold the size): C0-CF except DHT, JPG and DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length: TEM, RST0-7, SOI.
_JPEG_BARE = frozenset({0x01, *range(0xD0, 0xD9)})


def picture_size(data: bytes | BinaryIO) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG, PNG, WebP or BMP header, without decoding; None
    when ``data`` (bytes, or a binary file at its start) is none of these or is damaged."""
    f = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        head = f.read(32)
        kind = sniff(head)
        if kind == ".jpg":
            f.seek(2)
            size = _jpeg_size(f)
        elif kind == ".png" and head[12:16] == b"IHDR":
            size = struct.unpack(">II", head[16:24])
        elif kind == ".webp":
            size = _webp_size(head)
        elif kind == ".bmp":
            size = _bmp_size(head)
        else:
            return None
    except (struct.error, OSError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return int(size[0]), int(size[1])


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment, walking the segments before it."""
    for _ in range(4096):  # a real file has a few dozen segments before its frame
        byte = f.read(1)
        if byte != b"\xff":
            return None
        marker, fill = 0xFF, 0
        while marker == 0xFF:  # fill bytes: a few at most in a real file
            fill += 1
            if fill > 64:
                return None
            (marker,) = struct.unpack("B", f.read(1))
        if marker in _JPEG_BARE:
            continue
        if marker in (0xD9, 0xDA):  # the image or its data began before any frame header
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if marker in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return (width, height) if height else None  # 0: given later by DNL; refused
        if length < 2:
            return None
        f.seek(length - 2, io.SEEK_CUR)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sizes
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit sizes minus one
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    return None


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    (header,) = struct.unpack("<I", head[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", head[18:22])
        return w, h
    if header >= 16:
        w, h = struct.unpack("<ii", head[18:26])
        return w, abs(h)  # a negative height is a top-down picture
    return None


def check_picture(data: bytes | BinaryIO, what: str = "the upload") -> tuple[int, int]:
    """The picture's ``(width, height)`` from its header, checked against the limits
    before anything decodes it.

    Raises:
        UnsupportedFormatError: not a JPEG, PNG, WebP or BMP, or its size cannot be read.
        PictureTooLargeError: more than :data:`MAX_SIDE` a side or :data:`MAX_PIXELS`.
    """
    size = picture_size(data)
    if size is None:
        raise UnsupportedFormatError(f"{what} is not a picture mattecam can read: {NOT_A_PICTURE}")
    w, h = size
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise PictureTooLargeError(
            f"{what} is a picture of {w}x{h} ({w * h / 1e6:.0f} megapixels); pictures up to "
            f"{MAX_SIDE} pixels a side and {MAX_PIXELS // 1_000_000} megapixels are accepted."
        )
    return w, h


def decode_image(data: bytes) -> Image:
    """Decode an uploaded picture (JPEG, PNG, WebP or BMP) to BGR, once its header has
    passed :func:`check_picture`.

    Raises:
        UnsupportedFormatError: anything else, or a damaged file.
        PictureTooLargeError: a picture too large.
    """
    check_picture(data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnsupportedFormatError(
            f"the upload is not a picture mattecam can read: {NOT_A_PICTURE}"
        )
    h, w = image.shape[:2]
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:  # a header that lied
        raise PictureTooLargeError(f"the upload decodes to {w}x{h}, more than its header said.")
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
    hash (so the same picture uploaded twice is one file), and written atomically. No picture
    is decoded before its header has passed :func:`check_picture`. Safe from several request
    threads at once: one lock serialises writes, another decodes (so memory holds at most one
    decoded picture, at most :data:`MAX_PIXELS`, for the library at a time).
    """

    def __init__(self, root: Path, *, max_upload: int = MAX_UPLOAD) -> None:
        self.root = root
        self.max_upload = max_upload
        self._lock = threading.Lock()  # guards writes into root
        self._decode_lock = threading.Lock()  # one decode at a time

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
            raise ConfigError(
                f"{name!r} is not an {kind}." if kind == "image" else f"{name!r} is not a {kind}."
            )
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
            PictureTooLargeError: too many pixels (see :func:`check_picture`).
        """
        if len(data) > self.max_upload:
            raise ConfigError(f"the upload is larger than {self.max_upload} bytes.")
        check_picture(data)  # before waiting for the decode lock
        with self._decode_lock:
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

    def check_image(self, name: str) -> Path:
        """The file of image entry ``name``, once its header has passed
        :func:`check_picture` (pictures copied into the library by hand are checked too).

        Raises:
            ConfigError, InputNotFoundError: see :meth:`path_of`.
            UnsupportedFormatError: not a picture mattecam can read.
            PictureTooLargeError: too many pixels.
        """
        path = self.path_of(name, "image")
        try:
            with path.open("rb") as f:
                check_picture(f, name)
        except OSError as e:
            raise UnsupportedFormatError(f"{name} cannot be read: {e.strerror or e}.") from e
        return path

    def thumbnail(self, name: str, width: int = 160) -> bytes:
        """A small JPEG of image entry ``name`` (for the page's picker)."""
        path = self.check_image(name)
        with self._decode_lock:
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
