"""One exception hierarchy whose messages tell the user how to fix the problem."""

from __future__ import annotations


class MattecamError(Exception):
    """Base of every error mattecam reports to the user.

    The message is a complete sentence or paragraph naming the problem and the fix; the CLI
    prints it without a traceback (unless ``-v``) and exits non-zero.
    """

    exit_code = 1


class ConfigError(MattecamError, ValueError):
    """An option or setting has an invalid value."""

    exit_code = 2


class InputNotFoundError(MattecamError, FileNotFoundError):
    """A camera, video, image or model file does not exist."""


class SourceError(MattecamError):
    """The input (camera or video file) could not be opened or read."""


class UnsupportedFormatError(MattecamError, ValueError):
    """A file or device format that mattecam cannot handle."""


class ModelError(MattecamError):
    """The segmentation model is missing, corrupt or cannot be fetched."""


class SinkError(MattecamError):
    """An output (file, window, virtual camera) could not be opened or written."""
