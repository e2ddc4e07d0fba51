"""``mattecam install-service``: a systemd user unit that starts the virtual camera at login."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from mattecam.errors import ConfigError

UNIT_NAME = "mattecam.service"
ENABLE = "systemctl --user daemon-reload && systemctl --user enable --now mattecam"


def unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/mattecam.service`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def quote(arg: str) -> str:
    """One argument as systemd's ``ExecStart=`` reads it back unchanged.

    ``%`` and ``$`` are doubled (systemd expands specifiers and variables), and anything
    with spaces, quotes or backslashes is double-quoted with C-style escapes.

    Raises:
        ConfigError: the argument holds a line break or a NUL (not expressible).
    """
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise ConfigError(f"the option {arg!r} contains a line break; it cannot go in a unit.")
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(options: Sequence[str], *, python: str | None = None) -> str:
    """The unit file: runs this Python's mattecam with ``options`` (and the config file)."""
    command = [python or sys.executable, "-m", "mattecam", *options]
    return f"""\
# Written by `mattecam install-service`. Run it again to update this file; to remove it:
#   systemctl --user disable --now mattecam && rm {unit_path()}
# Settings come from the config file (~/.config/mattecam/config.toml) and these options;
# edits to the config file apply live, without restarting the service.
[Unit]
Description=mattecam virtual background camera
After=graphical-session.target
StartLimitIntervalSec=120
StartLimitBurst=5

[Service]
Type=simple
ExecStart={" ".join(quote(a) for a in command)}
Restart=on-failure
RestartSec=5
# A stop by signal exits 128+N after finishing cleanly (143: systemctl stop's SIGTERM).
SuccessExitStatus=129 130 143
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=default.target
"""


def install(options: Sequence[str], *, dry_run: bool = False) -> tuple[Path, str]:
    """Write the unit (unless ``dry_run``); returns its path and text. Nothing else is
    touched: enabling it is the user's ``systemctl --user`` call (see :data:`ENABLE`)."""
    path = unit_path()
    text = unit_text(options)
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path, text
