"""The TOML config file: loading, strict checking, merging with flags, and live reloading."""

from __future__ import annotations

import difflib
import logging
import os
import sys
import threading
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mattecam.config import SettingError, Settings
from mattecam.errors import ConfigError, InputNotFoundError
from mattecam.specs import BackgroundSpec, InputSpec, OutputSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

#: Seconds between two looks at the file while mattecam runs.
POLL_INTERVAL = 0.5
#: A config file larger than this is refused (it is a few lines of settings).
MAX_BYTES = 256 * 1024

#: The spec types a setting may hold, each with the parser of its text.
SPECS: dict[Any, Callable[[str], object]] = {
    InputSpec: InputSpec.parse,
    OutputSpec: OutputSpec.parse,
    BackgroundSpec: BackgroundSpec.parse,
}

KEYS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
"""Every key the file may hold: exactly the :class:`~mattecam.config.Settings` fields."""
#: Command-line spellings whose key differs, for "did you mean" hints.
FLAG_KEYS = {
    "blur": "blur_strength",
    "output": "outputs",
    "o": "outputs",
    "i": "input",
    "b": "background",
    "no_temporal": "temporal",
    "no_crop": "crop",
}


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/mattecam/config.toml``, or ``~/.config/mattecam/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mattecam" / "config.toml"


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _describe(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str or hint in SPECS:
        return "a string in quotes"
    if typing.get_origin(hint) is tuple:
        return 'a list of strings, like ["auto"]'
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _describe(args[0]) if len(args) == 1 else str(hint)


def _convert(hint: Any, value: object) -> object:
    """``value`` as the Python type of ``hint``, or raise TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (hint is str or hint in SPECS) and isinstance(value, str):
        return SPECS.get(hint, str)(value)
    if origin is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        (item, *_) = typing.get_args(hint)
        return tuple(SPECS[item](v) if item in SPECS else v for v in value)
    raise TypeError


def check_value(key: str, value: object, *, where: str = "") -> object:
    """Check one setting's type and return it as :class:`Settings` holds it.

    Raises:
        ConfigError: an unknown key (with the nearest known one), or a value of the wrong
            type. Ranges are checked by :class:`Settings` itself.
    """
    prefix = f"{where}: " if where else ""
    hints = _hints()
    if key not in hints:
        plain = key.replace("-", "_").lstrip("_")
        near = (
            [FLAG_KEYS[plain]]
            if plain in FLAG_KEYS
            else difflib.get_close_matches(plain, KEYS, n=1)
        )
        hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(KEYS)}."
        raise ConfigError(f"{prefix}unknown key {key!r}{hint}")
    try:
        return _convert(hints[key], value)
    except ConfigError as e:  # a spec's own message, e.g. "not a colour"
        raise ConfigError(f"{prefix}{key}: {e}") from None
    except TypeError:
        raise ConfigError(
            f"{prefix}{key} must be {_describe(hints[key])}, got {value!r}."
        ) from None


def parse(text: str, *, where: str = "config") -> dict[str, object]:
    """The settings in TOML ``text``, each checked with :func:`check_value`.

    Raises:
        ConfigError: not TOML, an unknown key, or a value of the wrong type (the message
            names the key and ``where``).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}.") from None
    return {key: check_value(key, value, where=where) for key, value in data.items()}


def read(path: Path) -> dict[str, object]:
    """Read and check the file at ``path`` (see :func:`parse`).

    Raises:
        InputNotFoundError: the file does not exist.
        ConfigError: it cannot be read, or its contents are wrong.
    """
    return parse(_read_text(path), where=str(path))


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputNotFoundError(f"config file {path} does not exist; check the path.") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}.") from e
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_BYTES} bytes; is it the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e}).") from None


def merge(
    file_values: Mapping[str, object], cli_values: Mapping[str, object], *, where: str = "config"
) -> Settings:
    """Defaults < file < command-line flags, validated.

    Raises:
        ConfigError: the merged settings are invalid (a value out of range, no output...); a
            value out of range is named as its flag when a flag gave it, else as its key in
            the file ``where``.
    """
    try:
        return Settings(**{**file_values, **cli_values})  # type: ignore[arg-type]
    except SettingError as e:
        if e.key in cli_values:
            raise
        raise e.named(f"{where}: {e.key}") from None


@dataclass(frozen=True)
class LoadedConfig:
    """The settings of a run and where they came from, for :class:`ConfigWatcher`.

    ``path`` is the file that was (or, when it did not exist, would have been) read;
    ``cli_values`` the settings given as flags, which win over the file at every reload.
    """

    path: Path
    cli_values: Mapping[str, object]
    file_values: Mapping[str, object]
    settings: Settings


def load(cli_values: Mapping[str, object], path: Path | None = None) -> LoadedConfig:
    """Read the config file and merge it under the flags.

    ``path`` is ``--config``: it must exist. Without it the default file is read when it
    exists, and skipped when it does not.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ConfigError: the file or the merged settings are invalid.
    """
    target = path or default_path()
    file_values: dict[str, object] = {}
    if path is not None or target.is_file():
        file_values = read(target)
        log.info("settings from %s: %s", target, ", ".join(file_values) or "none")
    try:
        settings = merge(file_values, cli_values, where=str(target))
    except SettingError:
        raise  # it names the flag, or the file and its key
    except ConfigError as e:
        if not file_values:
            raise
        raise ConfigError(f"{e} (settings from {target} and the command line)") from None
    return LoadedConfig(target, dict(cli_values), file_values, settings)


@dataclass(frozen=True)
class _Unreadable:
    """A config file that exists but cannot be read (kept to be reported once)."""

    message: str


def changed(old: Settings, new: Settings) -> dict[str, object]:
    """The fields whose value differs, with their values in ``new``."""
    return {k: getattr(new, k) for k in KEYS if getattr(old, k) != getattr(new, k)}


class ConfigWatcher:
    """Watches the config file while mattecam runs and applies edits live.

    A named thread (``config-watch``) reads the file every ``interval`` seconds. When its
    contents change and then stay the same for one more look (so a half-saved file is not
    read), they are parsed, merged under the command-line flags and validated; the settings
    that differ from the previous good version of the file are passed to ``apply`` (called
    on the watcher thread). A file that does not parse or validate, or an ``apply`` that
    raises a :class:`~mattecam.errors.MattecamError`, keeps the running settings: the error
    is logged and kept in :attr:`error` (and passed to ``on_error``) until a good version is
    applied. A removed file also keeps the running settings.

    ``start`` and ``close`` are called from the main thread; ``close`` is idempotent.
    """

    def __init__(
        self,
        config: LoadedConfig,
        apply: Callable[[dict[str, object]], object],
        *,
        interval: float = POLL_INTERVAL,
        on_error: Callable[[str | None], None] | None = None,
    ) -> None:
        self.path = config.path
        self._cli = dict(config.cli_values)
        self._apply = apply
        self._on_error = on_error
        self._interval = interval
        self._good = config.settings  # merged settings of the last applied file version
        self._applied_text = self._current_text()
        self._seen_text = self._applied_text
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.reloads = 0  # versions applied (for tests and status)

    def _current_text(self) -> str | _Unreadable | None:
        try:
            return _read_text(self.path)
        except InputNotFoundError:
            return None
        except ConfigError as e:
            return _Unreadable(str(e))

    def start(self) -> None:
        """Start the watcher thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds). Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("config watcher did not stop within %.0f s", timeout)

    def __enter__(self) -> ConfigWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:  # the watcher must outlive anything a bad edit can cause
                log.exception("config watcher: unexpected error")

    def poll(self) -> bool:
        """Look at the file once; True when a new version was applied. Called by the
        watcher thread (and by tests, instead of starting it)."""
        text = self._current_text()
        settled = text == self._seen_text
        self._seen_text = text
        if not settled or text == self._applied_text:
            return False
        if text is None:
            log.warning("config file %s was removed; keeping the running settings", self.path)
            self._applied_text = None
            return False
        self._applied_text = text
        try:
            if isinstance(text, _Unreadable):
                raise ConfigError(text.message)
            new = merge(parse(text, where=str(self.path)), self._cli, where=str(self.path))
            changes = changed(self._good, new)
            if changes:
                self._apply(changes)
        except ConfigError as e:
            self._report(f"{self.path}: {e}" if str(self.path) not in str(e) else str(e))
            return False
        except Exception as e:  # a MattecamError from building a stage, or anything else
            self._report(f"{self.path}: could not apply the change: {e}")
            return False
        self._good = new
        self.reloads += 1
        if self.error is not None:
            self.error = None
            if self._on_error:
                self._on_error(None)
        log.info(
            "config file %s reloaded%s",
            self.path,
            f": {', '.join(changes)} changed" if changes else " (no change)",
        )
        return True

    def _report(self, message: str) -> None:
        log.error("%s; keeping the running settings", message)
        self.error = message
        if self._on_error:
            self._on_error(message)
