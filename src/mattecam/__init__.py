"""mattecam: a Linux virtual background camera."""

__version__ = "0.1.0"
