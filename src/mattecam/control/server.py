"""The control server: the page and a small JSON API on 127.0.0.1, guarded by Host, Origin
and a per-run token."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import json
import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from email.utils import formatdate
from http import HTTPStatus
from http.client import HTTPMessage
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from mattecam.config import CONTROL_PORT, SettingError
from mattecam.configfile import check_value
from mattecam.control.library import Library, PictureTooLargeError
from mattecam.control.paths import Endpoint, backgrounds_dir, publish, unpublish
from mattecam.control.protocol import HOST, TOKEN_HEADER
from mattecam.errors import (
    ConfigError,
    InputNotFoundError,
    MattecamError,
    UnsupportedFormatError,
)
from mattecam.frame import Image
from mattecam.live import LIVE_KEYS, ChangeResult, LiveController, NotRunningError
from mattecam.segmentation.models import MODELS
from mattecam.specs import BackgroundSpec, parse_color

log = logging.getLogger(__name__)

#: Largest JSON request body, in bytes.
MAX_JSON = 64 * 1024
#: Deepest nesting of arrays and objects in a JSON body (the API's bodies have one level).
MAX_JSON_DEPTH = 32
#: Largest request head (request line and headers), in bytes, and most header lines.
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
#: Seconds a client has, from connecting, to send its whole request (head and body); a
#: client that dribbles it is answered 408 and cut off then, however often it sends a byte.
REQUEST_TIMEOUT = 10.0
#: Seconds a client has to take an answer.
SEND_TIMEOUT = 10.0
#: Threads that run requests. A request is read whole before it reaches one, so a slow
#: client costs a connection (a coroutine and its buffer), never a thread.
WORKERS = 4
#: Seconds a complete request may wait for a free worker before it is answered 503.
QUEUE_TIMEOUT = 10.0
#: Connections open at once; more are answered 503 at once.
MAX_CONNECTIONS = 256
#: Connections the kernel holds before the server accepts them: room for a browser's
#: bursts (the 5 of ``socketserver`` dropped most of 200 at once, retried for 30 s).
BACKLOG = 128
#: After refusing a request without reading all of it: how long (seconds) and how much
#: (bytes) to read and discard, so the client sees the answer rather than a reset.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 1024 * 1024
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
HTTP_VERSION = re.compile(r"HTTP/1\.[01]")
DIGITS = re.compile(r"[0-9]+")


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
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head: bool = False) -> bytes:
        """The whole answer: status line, headers (the same safety headers on every
        answer; the connection closes after it) and, unless ``head``, the body."""
        fields = [
            ("Server", "mattecam"),
            ("Date", formatdate(usegmt=True)),
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        if self.content_type.startswith("text/html"):
            fields.append(("Content-Security-Policy", CSP))
        fields += [*self.headers, ("Connection", "close")]
        lines = [f"HTTP/1.1 {self.status.value} {self.status.phrase}"]
        lines += [f"{name}: {value}" for name, value in fields]
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head_bytes if head else head_bytes + self.body


def json_response(obj: object, status: HTTPStatus = HTTPStatus.OK) -> Response:
    return Response(json.dumps(obj).encode(), "application/json", status)


def error_response(status: HTTPStatus, message: str) -> Response:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status)


@dataclass
class Request:
    """One request, read whole from its connection before any route sees it."""

    method: str
    path: str
    headers: Message
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def read_json(self) -> dict[str, Any]:
        """The JSON object in the body ({} for an empty body).

        Raises:
            ApiError: 415 for another content type; 400 for invalid JSON (NaN and
                Infinity included), nesting deeper than :data:`MAX_JSON_DEPTH`, or
                anything but an object.
        """
        if not self.body.strip():
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json.")
        too_deep = ApiError(
            HTTPStatus.BAD_REQUEST,
            f"the JSON body nests too deeply (at most {MAX_JSON_DEPTH} levels).",
        )
        try:
            body = json.loads(self.body, parse_constant=_no_constant)
        except RecursionError:
            raise too_deep from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({e}).") from None
        if _deeper_than(body, MAX_JSON_DEPTH):
            raise too_deep
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object.")
        return body


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _deeper_than(value: object, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels (without
    recursion, so no depth can overflow the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class ControlServer:
    """Serves the control page and the ``/api/`` endpoints on 127.0.0.1 only.

    The socket is bound in the constructor (so a busy port is reported before the camera
    opens); :meth:`start` serves it from an event loop on the ``control-http`` thread, which
    reads each request whole within :data:`REQUEST_TIMEOUT` of its connection and then runs
    it on one of :data:`WORKERS` threads named ``control-worker-N`` (see :class:`_Transport`
    for every limit). Every request must name this machine in ``Host`` (DNS rebinding) and,
    when a browser sends one, in ``Origin`` (cross-site requests); every ``/api/`` call must
    carry the per-run token in the ``X-Mattecam-Token`` header. These are checked before a
    body is read. Changes go through the :class:`~mattecam.live.LiveController`, which
    serialises them.

    :meth:`close` (main thread) stops serving, closes every connection, joins the threads
    and is idempotent.
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
            self._httpd = _Transport(self, port)
        except OSError as e:
            raise ConfigError(
                f"cannot serve the control page on {HOST}:{port} ({e.strerror or e}); is "
                "another mattecam running? Choose another port with --control-port."
            ) from e
        self.port = int(self._httpd.socket.getsockname()[1])
        self.endpoint = Endpoint(self.port, self.token, os.getpid())
        self.allowed_hosts = {
            f"127.0.0.1:{self.port}",
            f"localhost:{self.port}",
            f"[::1]:{self.port}",
        }
        if self.port == 80:
            self.allowed_hosts |= {"127.0.0.1", "localhost", "[::1]"}
        self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}
        self._started = False
        self._closed = False
        self._preview_lock = threading.Lock()  # guards _preview
        self._preview: tuple[Image | None, bytes] = (None, b"")
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
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
        if self._started or self._closed:
            return
        self._started = True
        self._httpd.start()
        if self._publish:
            path = publish(self.endpoint)
            log.debug("control endpoint written to %s", path)
        log.info("control page on %s", self.endpoint.base_url)

    def close(self) -> None:
        """Stop serving, close the connections and release the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.close()
        if self._publish:
            unpublish(self.endpoint)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def body_limit(self, method: str, path: str) -> tuple[int, str | None]:
        """The largest body a request may send, in bytes, and for requests that must
        announce their body's length (uploads), what the body is."""
        if (method, path) == ("POST", "/api/upload"):
            return self.library.max_upload, "picture"
        return MAX_JSON, None

    def handle(self, request: Request) -> Response:
        """Answer one request, turning refusals into ``{"error": ...}`` (worker threads).
        Client errors are 4xx; anything unexpected is a 500 with one log line."""
        try:
            return self._route(request)
        except ApiError as e:
            return error_response(e.status, str(e))
        except MattecamError as e:
            status = next(s for cls, s in ERROR_STATUS if isinstance(e, cls))
            return error_response(status, str(e))
        except Exception as e:
            log.error(
                "control: %s %s failed: %s: %s",
                request.method,
                request.path,
                type(e).__name__,
                e,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return error_response(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; mattecam's log says more."
            )

    def _route(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path in STATIC:
            if method not in ("GET", "HEAD"):
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here.")
            name, ctype = STATIC[path]
            data = (resources.files("mattecam.control") / "static" / name).read_bytes()
            return Response(data, ctype)
        route = self.routes.get((method, path))
        if route is not None:
            return route(request)
        if path.startswith("/api/backgrounds/") and method == "GET":
            return self.thumbnail(request, unquote(path.removeprefix("/api/backgrounds/")))
        if any(p == path for _, p in self.routes):
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}.")
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such page or endpoint: {path}")

    # --- request checks (control-http thread, before the body is read) ------------------

    def check_request(self, request: Request) -> None:
        """Refuse requests not addressed to this machine, from other sites, or (under
        ``/api/``) without the token."""
        headers = request.headers
        host = (headers.get("Host") or "").strip().lower()
        if host not in self.allowed_hosts:
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                f"refused: the Host header {host!r} is not this machine; open "
                f"http://127.0.0.1:{self.port}/ (protection against DNS rebinding).",
            )
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() not in self.allowed_origins:
            raise ApiError(
                HTTPStatus.FORBIDDEN,
                f"refused: requests from {origin!r} are not allowed; only the control page "
                "itself may call the API (protection against cross-site requests).",
            )
        site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
        if site in ("cross-site", "same-site"):
            raise ApiError(HTTPStatus.FORBIDDEN, "refused: a cross-site request.")
        if request.path.startswith("/api/"):
            given = headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise ApiError(
                    HTTPStatus.UNAUTHORIZED,
                    f"missing or wrong token: send the {TOKEN_HEADER} header with the token "
                    "mattecam printed (open the page through the link it printed, or use "
                    "`mattecam ctl`).",
                )

    # --- routes (worker threads) ---------------------------------------------------------

    def _status(self, req: Request) -> Response:
        status = self.controller.status()
        status["settings"] = self.settings_view()
        return json_response(status)

    def settings_view(self) -> dict[str, Any]:
        """The settings in effect, JSON-ready (specs as the text a user writes), with the
        background described for the page."""
        s = self.controller.settings
        view = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
        view["input"] = str(s.input)
        view["outputs"] = [str(o) for o in s.outputs]
        view["background"] = str(s.background)
        view["background_info"] = self.describe_background(s.background)
        return view

    def describe_background(self, spec: BackgroundSpec) -> dict[str, Any]:
        """``{"kind": "blur"|"off"|"color"|"image"|"video", ...}`` for the page."""
        if spec.kind == "none":
            return {"kind": "off"}
        if spec.kind == "color":
            return {"kind": "color", "color": str(spec)}
        if spec.path is not None:
            text = str(spec.path)
            return {"kind": spec.kind, "name": self.library.name_of(text), "file": text}
        return {"kind": spec.kind}

    def _settings(self, req: Request) -> Response:
        return json_response(self.settings_view())

    def _set_settings(self, req: Request) -> Response:
        body = req.read_json()
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
            if key == "model" and (not isinstance(value, str) or value not in MODELS):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    f"model must be one of {', '.join(MODELS)} (model files are chosen in "
                    "the config file or on the command line).",
                )
            changes[key] = check_value(key, value)
        result = self._change(changes)
        return json_response({"applied": list(result.applied), "settings": self.settings_view()})

    def _set_background(self, req: Request) -> Response:
        body = req.read_json()
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
            changes["background"] = BackgroundSpec("blur")
        elif kind == "off":
            changes["background"] = BackgroundSpec("none")
        elif kind == "color":
            color = body.get("color")
            if not isinstance(color, str):
                raise ApiError(HTTPStatus.BAD_REQUEST, 'give the colour as "color": "#RRGGBB".')
            changes["background"] = BackgroundSpec.of_color(parse_color(color))
        else:
            name = body.get("name")
            if not isinstance(name, str):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, f'give the {kind}\'s library name as "name".'
                )
            if kind == "image":  # a picture is checked from its header before decoding
                changes["background"] = BackgroundSpec("image", path=self.library.check_image(name))
            else:
                changes["background"] = BackgroundSpec(
                    "video", path=self.library.path_of(name, kind)
                )
        self._change(changes, names={"blur_strength": "strength"})
        return json_response({"settings": self.settings_view()})

    def _change(
        self, changes: dict[str, object], *, names: dict[str, str] | None = None
    ) -> ChangeResult:
        """Apply ``changes`` live; a value out of range is named as the request named it
        (the setting's key, or the field in ``names``), not as a command-line flag."""
        try:
            return self.controller.change(**changes)
        except SettingError as e:
            raise e.named((names or {}).get(e.key, e.key)) from None

    def _upload(self, req: Request) -> Response:
        entry = self.library.store(req.body)  # at most max_upload bytes: see body_limit
        if req.query.get("apply") in ("1", "true", "yes"):
            self.controller.change(
                background=BackgroundSpec.of_file(self.library.root / entry.name)
            )
        return json_response(
            {
                "name": entry.name,
                "kind": entry.kind,
                "bytes": entry.bytes,
                "settings": self.settings_view(),
            },
            HTTPStatus.CREATED,
        )

    def _backgrounds(self, req: Request) -> Response:
        return json_response(
            {
                "backgrounds": [dataclasses.asdict(e) for e in self.library.entries()],
                "max_upload": self.library.max_upload,
            }
        )

    def thumbnail(self, req: Request, name: str) -> Response:
        return Response(self.library.thumbnail(name), "image/jpeg")

    def _preview_jpeg(self, req: Request) -> Response:
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

    def _pause(self, req: Request) -> Response:
        body = req.read_json()
        kind = body.get("kind", "brb")
        if kind not in ("still", "brb"):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"kind must be 'still' or 'brb', got {kind!r}.")
        self.controller.pause(kind)
        return json_response({"paused": kind})

    def _resume(self, req: Request) -> Response:
        req.read_json()
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


ERROR_STATUS: tuple[tuple[type[BaseException], HTTPStatus], ...] = (
    (NotRunningError, HTTPStatus.CONFLICT),
    (InputNotFoundError, HTTPStatus.NOT_FOUND),
    (PictureTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (UnsupportedFormatError, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    (MattecamError, HTTPStatus.BAD_REQUEST),
)


class _Workers:
    """A fixed number of named daemon threads (``control-worker-N``) running jobs in turn.

    :meth:`submit` may be called from any thread; a job's future can be cancelled until a
    worker takes it. :meth:`close` (once, by the owner) cancels the jobs still waiting and
    joins the threads with a timeout. Workers poll their queue with a timeout and check the
    stop event, so none blocks forever.
    """

    def __init__(self, count: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Response], Callable[[], Response]]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"control-worker-{i + 1}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], Response]) -> Future[Response]:
        future: Future[Response] = Future()
        self._jobs.put((future, job))
        return future

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                future, job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue  # its client was answered 503 while it waited
            try:
                future.set_result(job())
            except BaseException as e:  # handed to the connection that waits for it
                future.set_exception(e)

    def close(self, timeout: float) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._jobs.get_nowait()[0].cancel()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("control threads did not stop within %.0f s: %s", timeout, stuck)


@dataclass
class _Progress:
    """How far a connection's request got (for the answer to a refused one)."""

    method: str = ""
    target: str = ""
    whole: bool = False  # the request was read to its end


class _Transport:
    """The listening socket, and the event loop on the ``control-http`` thread that serves it.

    Each connection carries one request. The loop reads it whole, head and body, within
    :data:`REQUEST_TIMEOUT` of the connection (408 after that, however often the client sends
    a byte); the Host, Origin and token checks and the Content-Length checks (400, 411, 413)
    run before any body is read. Only a complete request goes to the :class:`_Workers`,
    so a slow or idle client holds a connection, never a thread; one that waits more than
    :data:`QUEUE_TIMEOUT` for a free worker is answered 503, as is a connection beyond
    :data:`MAX_CONNECTIONS`. The answer has :data:`SEND_TIMEOUT` to be taken, then the
    connection closes. Sockets and tasks are touched by the loop thread only; :meth:`stop`
    and :meth:`close` may be called from any thread (``_lock`` guards the hand-over).
    """

    def __init__(self, control: ControlServer, port: int) -> None:
        self.control = control
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.bind((HOST, port))  # no SO_REUSEADDR: never share the port
            self.socket.listen(BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.workers = _Workers(WORKERS)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()  # guards _loop, _stopping and _stop_requested
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._connections: set[asyncio.Task[None]] = set()  # loop thread only
        self._untaken: set[socket.socket] = set()  # accepted, their task not yet started
        self._resume_accepting: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the workers and the loop; returns once the loop accepts connections."""
        self.workers.start()
        self._thread = threading.Thread(target=self._run, name="control-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(JOIN_TIMEOUT):
            log.warning("the control server did not start within %.0f s", JOIN_TIMEOUT)

    def stop(self) -> None:
        """Ask the loop to stop (any thread)."""
        with self._lock:
            self._stop_requested = True
            loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stopping.set)

    def close(self) -> None:
        """Stop the loop, join the threads and release the port."""
        self.stop()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("control server thread did not stop within %.0f s", JOIN_TIMEOUT)
        self.socket.close()  # already closed by the loop, unless it never ran
        self.workers.close(JOIN_TIMEOUT)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except Exception as e:
            log.error("control server failed: %s: %s", type(e).__name__, e)
        finally:
            loop.close()
            self._ready.set()

    async def _serve(self) -> None:
        stopping = asyncio.Event()
        with self._lock:
            if self._stop_requested:
                return
            self._loop, self._stopping = asyncio.get_running_loop(), stopping
        self._loop.add_reader(self.socket.fileno(), self._accept)
        self._ready.set()
        try:
            await stopping.wait()
        finally:
            self._loop.remove_reader(self.socket.fileno())
            if self._resume_accepting is not None:
                self._resume_accepting.cancel()
            self.socket.close()  # connections still queued in the kernel are reset
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            for conn in self._untaken:  # tasks cancelled before they began
                conn.close()

    def _accept(self) -> None:
        """Accept the connections the kernel holds, each served by a task of its own (the
        loop calls this when the socket is readable; a plain reader rather than
        ``asyncio.start_server`` or ``sock_accept``, whose stop can lose a connection
        accepted at that moment without closing it)."""
        assert self._loop is not None
        for _ in range(BACKLOG):
            try:
                conn, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors, say: pause, clients wait
                log.warning("control: cannot accept a connection: %s", e)
                fd = self.socket.fileno()
                self._loop.remove_reader(fd)
                self._resume_accepting = self._loop.call_later(
                    0.5, self._loop.add_reader, fd, self._accept
                )
                return
            conn.setblocking(False)
            self._untaken.add(conn)
            task = self._loop.create_task(self._connection(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _connection(self, conn: socket.socket) -> None:
        self._untaken.discard(conn)
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
        except BaseException as e:  # an OSError, or cancelled by the server's stop
            conn.close()
            if not isinstance(e, OSError):
                raise
            log.debug("control: connection dropped: %s", e)
            return
        try:
            await self._exchange(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            log.debug("control: connection dropped: %s", e or type(e).__name__)
        except Exception as e:
            log.error("control: connection failed: %s: %s", type(e).__name__, e)
        finally:  # also when cancelled by the server's stop
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it, and close."""
        if len(self._connections) > MAX_CONNECTIONS:
            # Refused unread and closed at once (no lingering): under a flood, it must go.
            writer.write(_busy("too many connections").encode())
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
            return
        progress = _Progress()
        try:
            request = await asyncio.wait_for(self._read(reader, writer, progress), REQUEST_TIMEOUT)
        except asyncio.TimeoutError:
            response = error_response(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request did not arrive whole within {REQUEST_TIMEOUT:.0f} s.",
            )
        except ApiError as e:
            response = error_response(e.status, str(e))
        else:
            response = await self._run_request(request)
        path = progress.target.partition("?")[0]  # the page's query holds the token
        log.debug("control: %s %s -> %d", progress.method, path, response.status)
        writer.write(response.encode(head=progress.method == "HEAD"))
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
        if not progress.whole:
            await _linger(reader, writer)

    async def _run_request(self, request: Request) -> Response:
        """The answer from a worker, or 503 when none took the request in time."""
        future = self.workers.submit(functools.partial(self.control.handle, request))
        answer = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(answer), QUEUE_TIMEOUT)
        except asyncio.TimeoutError:
            if future.cancel():  # still queued: no worker has started it
                return _busy("the control server is busy")
            return await answer  # running: its answer is on its way

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, progress: _Progress
    ) -> Request:
        """The request, read whole and checked; refusals raise :class:`ApiError`."""
        lines = await _read_head(reader)
        words = lines[0].decode("latin-1").split()
        if len(words) != 3:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the request line is malformed.")
        method, target, version = words
        progress.method, progress.target = method, target
        if not HTTP_VERSION.fullmatch(version):
            raise ApiError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "speak HTTP/1.1 or HTTP/1.0.")
        headers = Parser(_class=HTTPMessage).parsestr(b"".join(lines[1:]).decode("latin-1"))
        if target.startswith("//"):  # a path, not a network location
            target = "/" + target.lstrip("/")
        try:
            parts = urlsplit(target)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the request target is malformed.") from None
        request = Request(method, parts.path, headers)
        for item in parts.query.split("&"):
            if item:
                key, _, value = item.partition("=")
                request.query[unquote(key)] = unquote(value)
        self.control.check_request(request)
        limit, required = self.control.body_limit(method, request.path)
        request.body = await _read_body(reader, writer, request, limit, required)
        progress.whole = True
        return request


async def _read_head(reader: asyncio.StreamReader) -> list[bytes]:
    """The request line and header lines, without the blank line that ends them."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            line = b"x" * (MAX_HEAD + 1)  # refused below
        except asyncio.IncompleteReadError as e:
            if not lines and not e.partial.strip():
                raise  # connected and left without a word: nothing to answer
            raise ApiError(HTTPStatus.BAD_REQUEST, "the request ended within its head.") from None
        size += len(line)
        if size > MAX_HEAD or len(lines) > MAX_HEADERS:
            raise ApiError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"the request's head is over {MAX_HEAD} bytes or {MAX_HEADERS} lines.",
            )
        if line.strip():
            lines.append(line)
        elif lines:  # the blank line after the headers (blank lines before are skipped)
            return lines


async def _read_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: Request,
    limit: int,
    required: str | None,
) -> bytes:
    """The body the Content-Length announces: refused before it is read when it is
    larger than ``limit`` (413), has no valid length (400; 411 when ``required``, or when
    chunked), or ends early (400)."""
    headers = request.headers
    what = required or "request"
    if headers.get("Transfer-Encoding") is not None:
        raise ApiError(
            HTTPStatus.LENGTH_REQUIRED,
            f"send the {what} with a Content-Length (chunked bodies are not accepted).",
        )
    values = {v.strip() for v in headers.get_all("Content-Length", [])}
    if not values:
        if required:
            raise ApiError(
                HTTPStatus.LENGTH_REQUIRED, f"send the {required} with a Content-Length header."
            )
        return b""
    text = values.pop()
    if values or not DIGITS.fullmatch(text):
        raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length must be one number of bytes.")
    length = int(text) if len(text) <= 18 else limit + 1  # no 40-digit conversions
    if length > limit:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the {what} is {text} bytes; at most {limit} bytes are accepted.",
        )
    if length and (headers.get("Expect") or "").strip().lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"the body ended early: {len(e.partial)} of {length} bytes arrived.",
        ) from None


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """End our side, then read and drop what the client still sends for a moment: closing
    with unread data would reset the connection and could lose the answer."""
    if writer.can_write_eof():
        writer.write_eof()

    async def discard() -> None:
        left = LINGER_BYTES
        while left > 0:
            chunk = await reader.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)

    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(discard(), LINGER_TIMEOUT)


def _busy(why: str) -> Response:
    response = error_response(HTTPStatus.SERVICE_UNAVAILABLE, f"{why}; try again in a moment.")
    response.headers = (("Retry-After", "1"),)
    return response
