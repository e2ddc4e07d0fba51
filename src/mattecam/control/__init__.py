"""Live control: the page and HTTP API on 127.0.0.1, the background library, ``mattecam ctl``."""

from __future__ import annotations

from mattecam.control.library import Library
from mattecam.control.paths import Endpoint, backgrounds_dir, discover
from mattecam.control.server import ControlServer

__all__ = ["ControlServer", "Endpoint", "Library", "backgrounds_dir", "discover"]
