"""Where the control server keeps uploads and tells ``mattecam ctl`` its port and token."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mattecam.errors import ConfigError, InputNotFoundError

log = logging.getLogger(__name__)


def data_dir() -> Path:
    """``$XDG_DATA_HOME/mattecam`` or ``~/.local/share/mattecam``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mattecam"


def backgrounds_dir() -> Path:
    """The background library: uploads land here, and the page offers what is here."""
    return data_dir() / "backgrounds"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/mattecam`` (private to the user, cleared at logout), else
    ``$XDG_STATE_HOME/mattecam`` (``~/.local/state/mattecam``)."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        return Path(run) / "mattecam"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mattecam"


def runtime_file() -> Path:
    """The file a running control server describes itself in (mode 0600)."""
    return runtime_dir() / "control.json"


@dataclass(frozen=True)
class Endpoint:
    """How to reach a running control server: its port on 127.0.0.1 and its token."""

    port: int
    token: str
    pid: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def page_url(self) -> str:
        """The control page, with the token the page needs (keep it private)."""
        return f"{self.base_url}/?token={self.token}"


def publish(endpoint: Endpoint) -> Path:
    """Write ``endpoint`` to :func:`runtime_file`, readable by this user only."""
    path = runtime_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"port": endpoint.port, "token": endpoint.token, "pid": endpoint.pid})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".control-")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def unpublish(endpoint: Endpoint) -> None:
    """Remove :func:`runtime_file` if it still describes ``endpoint`` (another mattecam
    started later may have replaced it)."""
    path = runtime_file()
    with contextlib.suppress(OSError, ValueError, ConfigError, InputNotFoundError):
        if discover().token == endpoint.token:
            path.unlink()


def discover() -> Endpoint:
    """The endpoint of the running mattecam, from :func:`runtime_file`.

    Raises:
        InputNotFoundError: no mattecam with ``--control`` is running (no file).
        ConfigError: the file is damaged.
    """
    path = runtime_file()
    try:
        data = json.loads(path.read_text())
        return Endpoint(int(data["port"]), str(data["token"]), int(data.get("pid", 0)))
    except FileNotFoundError:
        raise InputNotFoundError(
            f"no running mattecam with a control server was found ({path} does not exist). "
            "Start mattecam with --control (or control = true in the config file), or give "
            "--port and --token."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is damaged ({e}); restart mattecam --control.") from None
