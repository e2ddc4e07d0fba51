"""``mattecam ctl``: the control API from the command line."""

from __future__ import annotations

import argparse
import json
import mimetypes
from collections.abc import Callable
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

from mattecam.control.paths import Endpoint, discover
from mattecam.control.protocol import HOST, TOKEN_HEADER
from mattecam.errors import ConfigError, InputNotFoundError, MattecamError


class ControlError(MattecamError):
    """The control server refused a request or could not be reached."""


class Client:
    """Talks to a control server on 127.0.0.1 (never through a proxy). One thread."""

    def __init__(self, endpoint: Endpoint, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, str, bytes]:
        """One request; returns (status, content type, body)."""
        conn = HTTPConnection(HOST, self.endpoint.port, timeout=self.timeout)
        headers = {TOKEN_HEADER: self.endpoint.token}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        except (OSError, HTTPException) as e:
            raise ControlError(
                f"cannot reach mattecam's control server on {self.endpoint.base_url} ({e}); "
                "is mattecam running with --control?"
            ) from e
        finally:
            conn.close()

    def call(self, method: str, path: str, payload: object = None) -> Any:
        """A JSON request; returns the decoded answer.

        Raises:
            ControlError: the server answered with an error (its message is kept).
        """
        body = None if payload is None else json.dumps(payload).encode()
        status, ctype, data = self.request(method, path, body, "application/json")
        return _decode(status, ctype, data)

    def upload(self, path: Path, *, apply: bool = False) -> Any:
        """Send a picture to the library (and make it the background with ``apply``)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputNotFoundError(f"{path} does not exist.") from None
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        status, rtype, answer = self.request(
            "POST", "/api/upload" + ("?apply=1" if apply else ""), data, ctype
        )
        return _decode(status, rtype, answer)


def _decode(status: int, ctype: str, data: bytes) -> Any:
    answer: Any = json.loads(data) if ctype.startswith("application/json") and data else None
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else None
        raise ControlError(f"mattecam refused: {message or f'HTTP {status}'}")
    return answer if answer is not None else data


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``mattecam ctl``."""
    p = argparse.ArgumentParser(
        prog="mattecam ctl",
        description="Control a running mattecam (started with --control) through its API on "
        "127.0.0.1. The port and token are read from the file mattecam writes in "
        "$XDG_RUNTIME_DIR/mattecam/control.json; --port and --token override them.",
    )
    p.add_argument("--port", type=int, help="the control server's port.")
    p.add_argument("--token", help="the control server's token.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", help="frame rates, CPU, latency, drops, viewers, settings.")
    s.add_argument("--json", action="store_true", help="print the raw JSON.")
    sub.add_parser("url", help="print the control page's address (with its token).")
    b = sub.add_parser(
        "background",
        help="change the background.",
        description="blur [--strength N], off, color COLOUR, image FILE|NAME (a file is "
        "uploaded first), video NAME (a video in the background library).",
    )
    b.add_argument("kind", choices=("blur", "off", "color", "image", "video"))
    b.add_argument("value", nargs="?", help="the colour, picture file, or library name.")
    b.add_argument("--strength", type=float, help="blur strength 0-100.")
    bl = sub.add_parser("blur", help="set the blur strength (0-100).")
    bl.add_argument("strength", type=float)
    st = sub.add_parser("set", help="change live settings: KEY=VALUE ... (e.g. mirror=true).")
    st.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    pa = sub.add_parser("pause", help="send a still instead of the camera picture.")
    pa.add_argument(
        "kind",
        nargs="?",
        choices=("still", "brb"),
        default="brb",
        help="still: freeze the current picture; brb: a 'be right back' card (default).",
    )
    sub.add_parser("resume", help="back to the live picture.")
    up = sub.add_parser("upload", help="add a picture to the background library.")
    up.add_argument("file", type=Path)
    up.add_argument("--apply", action="store_true", help="and make it the background.")
    sub.add_parser("list", help="list the background library.")
    pv = sub.add_parser("preview", help="save the current output picture as a JPEG.")
    pv.add_argument("file", type=Path)
    return p


def _value(text: str) -> object:
    """``true`` -> True, ``3`` -> 3, ``0.5`` -> 0.5, anything else a string."""
    try:
        value: object = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def run(argv: list[str]) -> list[str]:
    """Carry out one ``mattecam ctl`` command; returns the lines to print."""
    ns = build_parser().parse_args(argv)
    endpoint = discover() if ns.port is None or ns.token is None else None
    port = ns.port if ns.port is not None else endpoint.port if endpoint else 0
    token = ns.token if ns.token is not None else endpoint.token if endpoint else ""
    return COMMANDS[ns.command](Client(Endpoint(port, token)), ns)


def _url(client: Client, ns: argparse.Namespace) -> list[str]:
    return [client.endpoint.page_url]


def _status(client: Client, ns: argparse.Namespace) -> list[str]:
    status = client.call("GET", "/api/status")
    return [json.dumps(status, indent=2)] if ns.json else format_status(status)


def _blur(client: Client, ns: argparse.Namespace) -> list[str]:
    client.call("POST", "/api/settings", {"blur_strength": ns.strength})
    return [f"blur strength {ns.strength:g}"]


def _set(client: Client, ns: argparse.Namespace) -> list[str]:
    changes = {}
    for pair in ns.pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"{pair!r} is not KEY=VALUE.")
        changes[key.strip()] = _value(text.strip())
    answer = client.call("POST", "/api/settings", changes)
    return [f"applied: {', '.join(answer['applied']) or 'nothing changed'}"]


def _pause(client: Client, ns: argparse.Namespace) -> list[str]:
    client.call("POST", "/api/pause", {"kind": ns.kind})
    return [f"paused ({'frozen picture' if ns.kind == 'still' else 'be right back'})"]


def _resume(client: Client, ns: argparse.Namespace) -> list[str]:
    client.call("POST", "/api/resume", {})
    return ["resumed"]


def _upload(client: Client, ns: argparse.Namespace) -> list[str]:
    answer = client.upload(ns.file, apply=ns.apply)
    return [f"stored as {answer['name']}" + (" (now the background)" if ns.apply else "")]


def _list(client: Client, ns: argparse.Namespace) -> list[str]:
    entries = client.call("GET", "/api/backgrounds")["backgrounds"]
    return [f"{e['kind']:6} {e['name']}  ({e['bytes']} bytes)" for e in entries] or [
        "the background library is empty; add pictures with `mattecam ctl upload FILE`"
    ]


def _preview(client: Client, ns: argparse.Namespace) -> list[str]:
    status, ctype, data = client.request("GET", "/api/preview.jpg")
    jpeg = _decode(status, ctype, data)
    ns.file.write_bytes(jpeg)
    return [f"saved {ns.file} ({len(jpeg)} bytes)"]


def _background(client: Client, ns: argparse.Namespace) -> list[str]:
    kind, value = ns.kind, ns.value
    body: dict[str, object] = {"kind": kind}
    if ns.strength is not None:
        body["strength"] = ns.strength
    if kind in ("color", "image", "video") and not value:
        raise ConfigError(f"`mattecam ctl background {kind}` needs a value.")
    if kind == "color":
        body["color"] = value
    elif kind == "image" and Path(value).is_file():
        name = client.upload(Path(value))["name"]
        body["name"] = name
    elif kind in ("image", "video"):
        if "/" in value:
            raise InputNotFoundError(f"{value} does not exist.")
        body["name"] = value
    answer = client.call("POST", "/api/background", body)
    return [f"background: {_describe(answer['settings'])}"]


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], list[str]]] = {
    "url": _url,
    "status": _status,
    "background": _background,
    "blur": _blur,
    "set": _set,
    "pause": _pause,
    "resume": _resume,
    "upload": _upload,
    "list": _list,
    "preview": _preview,
}


def _describe(settings: dict[str, Any]) -> str:
    info = settings["background_info"]
    kind = info["kind"]
    if kind == "blur":
        return f"blur (strength {settings['blur_strength']:g})"
    if kind == "color":
        return f"colour {info['color']}"
    if kind in ("image", "video"):
        return f"{kind} {info.get('name') or info.get('file')}"
    return "off (the camera picture unchanged)"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_status(s: dict[str, Any]) -> list[str]:
    """The status answer as a few readable lines."""
    fps, lat = s["fps"], s["latency_ms"]
    watching = {None: "unknown", True: "yes", False: "no one"}[s["watching"]]
    paused = {None: "no", "still": "yes (frozen picture)", "brb": "yes (be right back)"}
    lines = [
        f"out {_num(fps['out'])} fps (in {_num(fps['in'])}, processed "
        f"{_num(fps['processed'])}), CPU {_num(s['cpu_percent'], 0)}% of one core",
        f"latency median {_num(lat['p50'])} ms, 95% {_num(lat['p95'])} ms",
        f"dropped {s['dropped']['before_process']} before processing, "
        f"{s['dropped']['before_output']} before output; repeated {s['frames']['repeats']}",
        f"watching: {watching}; paused: {paused.get(s['pause'], 'yes')}",
        f"background: {_describe(s['settings'])}",
    ]
    if s["restart_needed"]:
        lines.append(f"waiting for a restart: {', '.join(s['restart_needed'])}")
    if s["config_error"]:
        lines.append(f"config file error: {s['config_error']}")
    return lines
