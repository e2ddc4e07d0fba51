"""One exception hierarchy whose messages tell the user how to fix the problem."""

from __future__ import annotations


class MattecamError(Exception):
    """Base of every error mattecam reports to the user.

    The message is a complete sentence or paragraph naming the problem and the fix; the CLI
    prints it without a traceback (unless ``-v``) and exits with :attr:`exit_code`.

    Exit codes follow one rule (``mattecam --help`` states it): 2 when what the user asked
    for is wrong (an invalid value, an unknown name, a file or device that does not exist
    or is not what it was said to be), 1 when something failed while setting up or running
    (a busy camera, a full disk, a broken model file), 128 + N when signal N stopped the run.
    """

    #: 1: a failure while setting up or running.
    exit_code = 1


#: The exit code of a usage error: the command line or config file asks for something wrong.
USAGE = 2


class ConfigError(MattecamError, ValueError):
    """An option or setting has an invalid value."""

    exit_code = USAGE


class InputNotFoundError(MattecamError, FileNotFoundError):
    """A camera, video, image or model file does not exist."""

    exit_code = USAGE


class SourceError(MattecamError):
    """The input (camera or video file) could not be opened or read."""


class UnsupportedFormatError(MattecamError, ValueError):
    """A file or device format that mattecam cannot handle."""

    exit_code = USAGE


class ModelError(MattecamError):
    """The segmentation model is missing, corrupt or cannot be fetched."""


class SinkError(MattecamError):
    """An output (file, window, virtual camera) could not be opened or written."""


class PipelineStuckError(MattecamError):
    """A pipeline thread did not stop in time; its resources were left to the process exit."""
