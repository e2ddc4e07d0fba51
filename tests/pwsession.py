"""A private PipeWire session for tests: its own D-Bus, PipeWire and WirePlumber.

Nothing here touches the user's session: every daemon runs with ``XDG_RUNTIME_DIR``,
``PIPEWIRE_RUNTIME_DIR``, ``DBUS_SESSION_BUS_ADDRESS`` and the XDG data/state/config
directories pointed under one temporary directory, and ``PIPEWIRE_REMOTE`` removed.

API (import it from a test module; pytest puts ``tests/`` on ``sys.path``)::

    from pwsession import PipeWireSession, pw_env, pw_session  # noqa: F401 (fixtures)

``pw_session`` (fixture, module scope) -> :class:`PipeWireSession`, started; skips the
    module's tests when a tool is missing (:func:`missing_tools`). ``pw_env`` (fixture,
    module scope) -> ``pw_session.env``.

:class:`PipeWireSession` (also usable on its own: ``with PipeWireSession(tmp) as s:``)
    ``env``            the environment dict (a copy of ``os.environ`` plus the variables
                       above): pass it to ``subprocess`` for anything that must see the
                       session; or :meth:`~PipeWireSession.apply` it to this process
                       with ``monkeypatch`` before opening a ``PipeWireSink`` in-process.
    ``root``           the temporary directory; ``runtime`` (= ``XDG_RUNTIME_DIR``) holds
                       ``bus`` and ``pipewire-0``; ``<name>.log`` holds each process's output.
    ``spawn(*cmd, name=None, extra_env=None)``  start another process in the session
                       (a browser, ``xdg-desktop-portal``, a consumer): own process group,
                       output in ``root/<name>.log``, stopped by :meth:`close`. Returns the
                       ``Popen``; stop it earlier with :func:`stop`.
    ``start_pipewire()`` / ``stop_pipewire(sig=SIGTERM)`` / ``restart_pipewire()``
                       the PipeWire + WirePlumber pair alone (D-Bus stays): a daemon that
                       goes away and comes back, as after a suspend or a session restart.
    ``nodes(name=None)`` the ``pw-dump`` node objects (all, or those with ``node.name``).
    ``wait_node(name, present=True, timeout=10)`` poll until such a node exists (or
                       not); returns the nodes seen last.
    ``logs()``         ``{log file name: its last 2000 characters}``, for failure messages.
    ``close()``        stop every process it started, newest first (idempotent).

:func:`stop` ends one process this module started (its group), TERM then KILL, bounded.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

TOOLS = ("pipewire", "wireplumber", "dbus-daemon", "gst-launch-1.0", "pw-dump")
#: The variables that send a client to the session (set in :attr:`PipeWireSession.env`).
SESSION_VARS = (
    "XDG_RUNTIME_DIR",
    "PIPEWIRE_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CONFIG_HOME",
)


def missing_tools() -> list[str]:
    """What the session needs and this machine lacks (empty when it can run)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if ctypes.util.find_library("pipewire-0.3") is None:
        missing.append("libpipewire-0.3")
    return missing


def stop(proc: subprocess.Popen[bytes], term_wait: float = 3.0) -> None:
    """End a process this module started (and its group), waiting a bounded time."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class SessionError(RuntimeError):
    """A daemon of the session did not start; the message carries its log."""


class PipeWireSession:
    """D-Bus + PipeWire + WirePlumber under ``root``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "run"
        for d in ("run", "data", "state", "config"):
            (root / d).mkdir(mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update(
            XDG_RUNTIME_DIR=str(self.runtime),
            PIPEWIRE_RUNTIME_DIR=str(self.runtime),
            DBUS_SESSION_BUS_ADDRESS=f"unix:path={self.runtime / 'bus'}",
            XDG_DATA_HOME=str(root / "data"),
            XDG_STATE_HOME=str(root / "state"),
            XDG_CONFIG_HOME=str(root / "config"),
        )
        env.pop("PIPEWIRE_REMOTE", None)
        self.env = env
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dbus: subprocess.Popen[bytes] | None = None
        self._pipewire: subprocess.Popen[bytes] | None = None
        self._wireplumber: subprocess.Popen[bytes] | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> PipeWireSession:
        """Start D-Bus, then PipeWire and WirePlumber; raises :class:`SessionError`."""
        bus = self.env["DBUS_SESSION_BUS_ADDRESS"]
        self._dbus = self.spawn("dbus-daemon", "--session", f"--address={bus}", "--nofork")
        self._wait_for(self.runtime / "bus", "dbus-daemon", self._dbus)
        self.start_pipewire()
        return self

    def start_pipewire(self) -> None:
        """Start PipeWire (waiting for its socket) and WirePlumber."""
        sock = self.runtime / "pipewire-0"
        self._pipewire = self.spawn("pipewire")
        self._wait_for(sock, "pipewire", self._pipewire)
        self._wireplumber = self.spawn("wireplumber")

    def stop_pipewire(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop WirePlumber and PipeWire (``SIGKILL`` for a daemon that dies abruptly)."""
        for proc in (self._wireplumber, self._pipewire):
            if proc is None or proc.poll() is not None:
                continue
            if sig != signal.SIGTERM:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
            stop(proc)
        self._wireplumber = self._pipewire = None
        # A daemon killed abruptly leaves its sockets; the next one replaces them.

    def restart_pipewire(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """:meth:`stop_pipewire` then :meth:`start_pipewire`."""
        self.stop_pipewire(sig)
        self.start_pipewire()

    def spawn(
        self, *cmd: str, name: str | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in the session (own process group, output in ``root/<name>.log``,
        ``name`` defaulting to the program's name plus a counter); :meth:`close` stops it."""
        base = name or Path(cmd[0]).name
        logname, n = f"{base}.log", 1
        while (self.root / logname).exists() and name is None:
            n += 1
            logname = f"{base}-{n}.log"
        env = dict(self.env, **(extra_env or {}))
        with (self.root / logname).open("ab") as logf:
            proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=logf, start_new_session=True)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process started here, newest first (idempotent)."""
        while self._procs:
            stop(self._procs.pop())
        self._dbus = self._pipewire = self._wireplumber = None

    def __enter__(self) -> PipeWireSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- helpers ---------------------------------------------------------------------

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process (an in-process ``PipeWireSink``) at the session."""
        for key in SESSION_VARS:
            monkeypatch.setenv(key, self.env[key])
        monkeypatch.delenv("PIPEWIRE_REMOTE", raising=False)

    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace")[-2000:] for p in self.root.glob("*.log")}

    def nodes(self, name: str | None = None) -> list[dict[str, object]]:
        out = subprocess.run(
            ["pw-dump"], env=self.env, capture_output=True, timeout=10, check=False
        )
        if out.returncode != 0:  # no daemon (yet): no nodes
            return []
        return [
            o
            for o in json.loads(out.stdout or b"[]")
            if o.get("type") == "PipeWire:Interface:Node"
            and (name is None or o.get("info", {}).get("props", {}).get("node.name") == name)
        ]

    def wait_node(
        self, name: str, present: bool = True, timeout: float = 10
    ) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.nodes(name)
            if bool(nodes) == present or time.monotonic() > deadline:
                return nodes
            time.sleep(0.2)

    def _wait_for(self, path: Path, what: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 10
        while not path.exists() or (what == "pipewire" and not _listening(path)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SessionError(f"{what} did not start: {self.logs()}")
            time.sleep(0.05)


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def pw_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipeWireSession]:
    """A started :class:`PipeWireSession` for the module; skips when a tool is missing."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (bash scripts/setup.sh --dev)")
    session = PipeWireSession(tmp_path_factory.mktemp("pw"))
    try:
        session.start()
    except SessionError as e:
        session.close()
        pytest.fail(str(e))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def pw_env(pw_session: PipeWireSession) -> dict[str, str]:
    """The environment that reaches :func:`pw_session`."""
    return pw_session.env
