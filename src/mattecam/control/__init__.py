"""Live control: the page and HTTP API on 127.0.0.1, the background library, ``mattecam ctl``.

The server (:mod:`mattecam.control.server`) and the library (:mod:`mattecam.control.library`)
load OpenCV and the pipeline, so they are imported from their modules, not from here:
``mattecam ctl`` imports this package and must stay light.
"""

from __future__ import annotations

from mattecam.control.paths import Endpoint, backgrounds_dir, discover

__all__ = ["Endpoint", "backgrounds_dir", "discover"]
