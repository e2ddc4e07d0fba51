"""The control server: the page and a small JSON API on 127.0.0.1, guarded by Host, Origin
and a per-run token."""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from mattecam.compositing.backgrounds import parse_color
from mattecam.config import CONTROL_PORT
from mattecam.configfile import check_value
from mattecam.control.library import Library, kind_of
from mattecam.control.paths import Endpoint, backgrounds_dir, publish, unpublish
from mattecam.errors import (
    ConfigError,
    InputNotFoundError,
    MattecamError,
    UnsupportedFormatError,
)
from mattecam.frame import Image
from mattecam.live import LIVE_KEYS, LiveController, NotRunningError
from mattecam.segmentation.models import MODELS

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Mattecam-Token"
#: Largest JSON request body, in bytes.
MAX_JSON = 64 * 1024
#: Seconds a client may take to send a request before its connection is dropped.
REQUEST_TIMEOUT = 10.0
JOIN_TIMEOUT = 5.0
PREVIEW_WIDTH = 640
#: Settings ``POST /api/settings`` accepts: the live ones, except the background, which goes
#: through ``POST /api/background`` so that no client text is ever used as a file path.
API_SETTINGS = LIVE_KEYS - {"background"}
BACKGROUND_KINDS = ("blur", "image", "color", "video", "off")

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and a message for the user."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    """What a route returns."""

    body: bytes
    content_type: str = "application/json"
    status: HTTPStatus = HTTPStatus.OK


def json_response(obj: object, status: HTTPStatus = HTTPStatus.OK) -> Response:
    return Response(json.dumps(obj).encode(), "application/json", status)


class ControlServer:
    """Serves the control page and the ``/api/`` endpoints on 127.0.0.1 only.

    The socket is bound in the constructor (so a busy port is reported before the camera
    opens); :meth:`start` serves from a daemon thread named ``control-http``, and each
    request runs on its own short-lived daemon thread (a stalled client is dropped after
    :data:`REQUEST_TIMEOUT`). Every request must name this machine in ``Host`` (DNS
    rebinding) and, when a browser sends one, in ``Origin`` (cross-site requests); every
    ``/api/`` call must carry the per-run token in the ``X-Mattecam-Token`` header. Changes
    go through the :class:`~mattecam.live.LiveController`, which serialises them.

    :meth:`close` (main thread) stops serving, joins the thread and is idempotent.
    """

    def __init__(
        self,
        controller: LiveController,
        *,
        port: int = CONTROL_PORT,
        library: Library | None = None,
        token: str | None = None,
        publish_endpoint: bool = False,
    ) -> None:
        self.controller = controller
        self.library = library or Library(backgrounds_dir())
        self.token = token or secrets.token_urlsafe(24)
        self._publish = publish_endpoint
        try:
            self._httpd = _Server((HOST, port), _Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve the control page on {HOST}:{port} ({e.strerror or e}); is "
                "another mattecam running? Choose another port with --control-port."
            ) from e
        self._httpd.control = self
        self.port = int(self._httpd.server_address[1])
        self.endpoint = Endpoint(self.port, self.token, os.getpid())
        self.allowed_hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}",
                              f"[::1]:{self.port}"}  # fmt: skip
        if self.port == 80:
            self.allowed_hosts |= {"127.0.0.1", "localhost", "[::1]"}
        self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._preview_lock = threading.Lock()  # guards _preview
        self._preview: tuple[Image | None, bytes] = (None, b"")
        self.routes: dict[tuple[str, str], Callable[[_Handler], Response]] = {
            ("GET", "/api/status"): self._status,
            ("GET", "/api/settings"): self._settings,
            ("POST", "/api/settings"): self._set_settings,
            ("GET", "/api/preview.jpg"): self._preview_jpeg,
            ("GET", "/api/backgrounds"): self._backgrounds,
            ("POST", "/api/background"): self._set_background,
            ("POST", "/api/upload"): self._upload,
            ("POST", "/api/pause"): self._pause,
            ("POST", "/api/resume"): self._resume,
        }

    @property
    def url(self) -> str:
        """The page's address, with the token (for this user's eyes only)."""
        return self.endpoint.page_url

    def start(self) -> None:
        """Serve from the ``control-http`` thread; publish the endpoint for ``mattecam ctl``."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="control-http", daemon=True,
        )  # fmt: skip
        self._thread.start()
        if self._publish:
            path = publish(self.endpoint)
            log.debug("control endpoint written to %s", path)
        log.info("control page on %s", self.endpoint.base_url)

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._httpd.shutdown()  # returns once serve_forever has left its loop
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("control server thread did not stop within %.0f s", JOIN_TIMEOUT)
        self._httpd.server_close()
        if self._publish:
            unpublish(self.endpoint)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- request checks (request threads) ------------------------------------------------

    def check_request(self, handler: _Handler, path: str) -> None:
        """Refuse requests not addressed to this machine, from other sites, or (under
        ``/api/``) without the token."""
        host = (handler.headers.get("Host") or "").strip().lower()
        if host not in self.allowed_hosts:
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                f"refused: the Host header {host!r} is not this machine; open "
                f"http://127.0.0.1:{self.port}/ (protection against DNS rebinding).",
            )
        origin = handler.headers.get("Origin")
        if origin is not None and origin.strip().lower() not in self.allowed_origins:
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                f"refused: requests from {origin!r} are not allowed; only the control page "
                "itself may call the API (protection against cross-site requests).",
            )
        site = (handler.headers.get("Sec-Fetch-Site") or "").strip().lower()
        if site in ("cross-site", "same-site"):
            raise ApiError(HTTPStatus.FORBIDDEN, "refused: a cross-site request.")
        if path.startswith("/api/"):
            given = handler.headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise ApiError(
                    HTTPStatus.UNAUTHORIZED,
                    f"missing or wrong token: send the {TOKEN_HEADER} header with the token "
                    "mattecam printed (open the page through the link it printed, or use "
                    "`mattecam ctl`).",
                )

    # --- routes (request threads) --------------------------------------------------------

    def _status(self, h: _Handler) -> Response:
        status = self.controller.status()
        status["settings"] = self.settings_view()
        return json_response(status)

    def settings_view(self) -> dict[str, Any]:
        """The settings in effect, JSON-ready, with the background described for the page."""
        s = self.controller.settings
        view = dataclasses.asdict(s)
        view["outputs"] = list(s.outputs)
        view["background_info"] = self.describe_background(s.background)
        return view

    def describe_background(self, spec: str) -> dict[str, Any]:
        """``{"kind": "blur"|"off"|"color"|"image"|"video", ...}`` for a ``-b`` value."""
        text = spec.strip()
        low = text.lower()
        if low == "blur":
            return {"kind": "blur"}
        if low in ("none", "off"):
            return {"kind": "off"}
        kind = kind_of(text)
        if kind is not None:
            return {"kind": kind, "name": self.library.name_of(text), "file": text}
        try:
            b, g, r = parse_color(text)
        except ConfigError:
            return {"kind": "image", "name": None, "file": text}
        return {"kind": "color", "color": f"#{r:02x}{g:02x}{b:02x}"}

    def _settings(self, h: _Handler) -> Response:
        return json_response(self.settings_view())

    def _set_settings(self, h: _Handler) -> Response:
        body = h.read_json()
        changes: dict[str, object] = {}
        for key, value in body.items():
            if key == "background":
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "set the background with POST /api/background (kind and name), not here.",
                )
            if key not in API_SETTINGS:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    f"{key!r} cannot be changed here; live settings are: "
                    f"{', '.join(sorted(API_SETTINGS))}. Others need a restart of mattecam.",
                )
            if key == "model" and value not in MODELS:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    f"model must be one of {', '.join(MODELS)} (model files are chosen in "
                    "the config file or on the command line).",
                )
            changes[key] = check_value(key, value)
        result = self.controller.change(**changes)
        return json_response({"applied": list(result.applied), "settings": self.settings_view()})

    def _set_background(self, h: _Handler) -> Response:
        body = h.read_json()
        kind = body.get("kind")
        if kind not in BACKGROUND_KINDS:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"kind must be one of {', '.join(BACKGROUND_KINDS)}, got {kind!r}.",
            )
        unknown = set(body) - {"kind", "name", "color", "strength"}
        if unknown:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown field {sorted(unknown)[0]!r}.")
        changes: dict[str, object] = {}
        if "strength" in body:
            changes["blur_strength"] = check_value("blur_strength", body["strength"])
        if kind == "blur":
            changes["background"] = "blur"
        elif kind == "off":
            changes["background"] = "none"
        elif kind == "color":
            color = body.get("color")
            if not isinstance(color, str):
                raise ApiError(HTTPStatus.BAD_REQUEST, 'give the colour as "color": "#RRGGBB".')
            b, g, r = parse_color(color)
            changes["background"] = f"#{r:02x}{g:02x}{b:02x}"
        else:
            name = body.get("name")
            if not isinstance(name, str):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, f'give the {kind}\'s library name as "name".'
                )
            changes["background"] = str(self.library.path_of(name, kind))
        self.controller.change(**changes)
        return json_response({"settings": self.settings_view()})

    def _upload(self, h: _Handler) -> Response:
        data = h.read_body(self.library.max_upload, what="picture")
        entry = self.library.store(data)
        if h.query.get("apply") in ("1", "true", "yes"):
            self.controller.change(background=str(self.library.root / entry.name))
        return json_response(
            {"name": entry.name, "kind": entry.kind, "bytes": entry.bytes,
             "settings": self.settings_view()},
            HTTPStatus.CREATED,
        )  # fmt: skip

    def _backgrounds(self, h: _Handler) -> Response:
        return json_response(
            {
                "backgrounds": [dataclasses.asdict(e) for e in self.library.entries()],
                "max_upload": self.library.max_upload,
            }
        )

    def thumbnail(self, h: _Handler, name: str) -> Response:
        return Response(self.library.thumbnail(name), "image/jpeg")

    def _preview_jpeg(self, h: _Handler) -> Response:
        latest = self.controller.latest
        image = latest.latest() if latest is not None else None
        if image is None:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "no picture yet.")
        with self._preview_lock:
            cached, jpeg = self._preview
            if cached is not image:
                jpeg = encode_preview(image)
                self._preview = (image, jpeg)
        return Response(jpeg, "image/jpeg")

    def _pause(self, h: _Handler) -> Response:
        body = h.read_json()
        kind = body.get("kind", "brb")
        if kind not in ("still", "brb"):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"kind must be 'still' or 'brb', got {kind!r}.")
        self.controller.pause(kind)
        return json_response({"paused": kind})

    def _resume(self, h: _Handler) -> Response:
        h.read_json()
        self.controller.resume()
        return json_response({"paused": None})


def encode_preview(image: Image) -> bytes:
    """A JPEG of ``image``, at most :data:`PREVIEW_WIDTH` wide."""
    h, w = image.shape[:2]
    if w > PREVIEW_WIDTH:
        size = (PREVIEW_WIDTH, max(1, round(h * PREVIEW_WIDTH / w)))
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid BGR image
        raise MattecamError("JPEG encoding of the preview failed")
    return bytes(jpeg)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # never share the port with another listener
    control: ControlServer


ERROR_STATUS: tuple[tuple[type[BaseException], HTTPStatus], ...] = (
    (NotRunningError, HTTPStatus.CONFLICT),
    (InputNotFoundError, HTTPStatus.NOT_FOUND),
    (UnsupportedFormatError, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    (MattecamError, HTTPStatus.BAD_REQUEST),
)


class _Handler(BaseHTTPRequestHandler):
    """One request, on its own thread. Answers are JSON (``{"error": ...}`` on failure),
    the static page files, or JPEG images; the connection closes after each answer."""

    server: _Server
    server_version = "mattecam"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    query: dict[str, str]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        control = self.server.control
        parts = urlsplit(self.path)
        path = parts.path
        self.query = {}
        for item in parts.query.split("&"):
            if item:
                key, _, value = item.partition("=")
                self.query[unquote(key)] = unquote(value)
        try:
            control.check_request(self, path)
            response = self._route(control, method, path)
        except ApiError as e:
            response = json_response({"error": str(e)}, e.status)
        except MattecamError as e:
            status = next(s for cls, s in ERROR_STATUS if isinstance(e, cls))
            response = json_response({"error": str(e)}, status)
        except Exception as e:
            log.exception("control: %s %s failed", method, path)
            response = json_response(
                {"error": f"internal error: {type(e).__name__}: {e}"},
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )
        self._send(response, head=method == "HEAD")

    def _route(self, control: ControlServer, method: str, path: str) -> Response:
        if path in STATIC:
            if method not in ("GET", "HEAD"):
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here.")
            name, ctype = STATIC[path]
            data = (resources.files("mattecam.control") / "static" / name).read_bytes()
            return Response(data, ctype)
        route = control.routes.get((method, path))
        if route is not None:
            return route(self)
        if path.startswith("/api/backgrounds/") and method == "GET":
            return control.thumbnail(self, unquote(path.removeprefix("/api/backgrounds/")))
        if any(p == path for _, p in control.routes):
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}.")
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such page or endpoint: {path}")

    # --- bodies --------------------------------------------------------------------------

    def read_body(self, limit: int, *, what: str = "request") -> bytes:
        """The request body, refused when larger than ``limit`` bytes (before reading it)
        or sent without a Content-Length."""
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length.")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number.") from None
        if length < 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length is negative.")
        if length > limit:
            self.close_connection = True
            raise ApiError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the {what} is {length} bytes; at most {limit} bytes are accepted.",
            )
        data = self.rfile.read(length)
        if len(data) != length:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body ended early.")
        return data

    def read_json(self) -> dict[str, Any]:
        """The JSON object in the body ({} for an empty body)."""
        data = self.read_body(MAX_JSON)
        if not data.strip():
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json.")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({e}).") from None
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object.")
        return body

    def _send(self, r: Response, *, head: bool = False) -> None:
        try:
            self.send_response(r.status)
            self.send_header("Content-Type", r.content_type)
            self.send_header("Content-Length", str(len(r.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            if r.content_type.startswith("text/html"):
                self.send_header("Content-Security-Policy", CSP)
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(r.body)
        except OSError as e:  # the client went away
            log.debug("control: could not answer: %s", e)
        self.close_connection = True
