"""A camera without a kernel module: frames published as a PipeWire Video/Source node."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
import struct
import threading
import time
from fractions import Fraction
from pathlib import Path

from mattecam.errors import ConfigError, SinkError
from mattecam.frame import Frame
from mattecam.sinks.base import Sink
from mattecam.sinks.convert import Converter, pixel_format

log = logging.getLogger(__name__)

LIBRARY = "libpipewire-0.3.so.0"
INSTALL_HINT = (
    "Install PipeWire's client library (Debian/Ubuntu: `sudo apt install libpipewire-0.3-0`; "
    "Fedora: `sudo dnf install pipewire-libs`), or use a v4l2loopback output (-o auto)."
)
DAEMON_HINT = (
    "Is PipeWire running? (`systemctl --user status pipewire`; start it with "
    "`systemctl --user start pipewire wireplumber`.) Or use a v4l2loopback output (-o auto)."
)
#: How long :meth:`PipeWireSink.open` waits for the daemon to accept the node.
CONNECT_TIMEOUT = 5.0
#: After the daemon went away, :meth:`PipeWireSink.write` tries to republish at most this
#: often (seconds); each try costs a socket probe, and a new stream once the daemon answers.
RETRY_INTERVAL = 1.0
#: How long a socket probe during a retry may take (the output thread waits for it).
PROBE_TIMEOUT = 0.05

# --- the libpipewire-0.3 ABI used here (stable across 0.3.x and 1.x) ----------------------

# enum pw_stream_state
STATE_ERROR, STATE_UNCONNECTED, STATE_CONNECTING, STATE_PAUSED, STATE_STREAMING = -1, 0, 1, 2, 3
STATE_NAMES = {-1: "error", 0: "unconnected", 1: "connecting", 2: "paused", 3: "streaming"}
DIRECTION_OUTPUT = 1
ID_ANY = 0xFFFFFFFF
# enum pw_stream_flags
FLAG_DRIVER = 1 << 3
FLAG_MAP_BUFFERS = 1 << 2

# SPA pod types, object types, param ids and keys (spa/utils/type.h, spa/param/*.h)
T_ID, T_INT, T_RECT, T_FRAC, T_OBJECT, T_CHOICE = 3, 4, 10, 11, 15, 19
CHOICE_RANGE, CHOICE_FLAGS = 1, 4
OBJECT_FORMAT, OBJECT_PARAM_BUFFERS = 0x40003, 0x40004
PARAM_ENUM_FORMAT, PARAM_FORMAT, PARAM_BUFFERS = 3, 4, 5
FORMAT_MEDIA_TYPE, FORMAT_MEDIA_SUBTYPE = 1, 2
FORMAT_VIDEO_FORMAT, FORMAT_VIDEO_SIZE, FORMAT_VIDEO_FRAMERATE = 0x20001, 0x20003, 0x20004
MEDIA_TYPE_VIDEO, MEDIA_SUBTYPE_RAW = 2, 1
BUFFERS_BUFFERS, BUFFERS_BLOCKS, BUFFERS_SIZE, BUFFERS_STRIDE, BUFFERS_DATATYPE = 1, 2, 3, 4, 6
DATA_MEM_PTR, DATA_MEM_FD = 1, 2

#: enum spa_video_format -> mattecam pixel format, in order of preference (the first is
#: the default the consumer sees). libwebrtc, GStreamer and pw-v4l2 take all three.
VIDEO_FORMATS = {2: "i420", 23: "nv12", 4: "yuyv"}
#: SPA names, for logs.
SPA_NAMES = {2: "I420", 23: "NV12", 4: "YUY2"}
#: Buffers a stream offers (default, min, max): pipewiresrc refuses fewer than 8.
BUFFER_COUNT = (8, 2, 16)


def _pod(type_: int, body: bytes) -> bytes:
    """One SPA pod: size, type, body, padded to 8 bytes."""
    return struct.pack("<II", len(body), type_) + body + b"\0" * (-len(body) % 8)


def _prop(key: int, value: bytes) -> bytes:
    return struct.pack("<II", key, 0) + value


def _id(value: int) -> bytes:
    return _pod(T_ID, struct.pack("<I", value))


def _int(value: int) -> bytes:
    return _pod(T_INT, struct.pack("<i", value))


def _choice(kind: int, child_type: int, values: list[int]) -> bytes:
    fmt = "<I" if child_type == T_ID else "<i"
    body = struct.pack("<IIII", kind, 0, 4, child_type)
    return _pod(T_CHOICE, body + b"".join(struct.pack(fmt, v) for v in values))


def _object(type_: int, id_: int, props: list[bytes]) -> bytes:
    return _pod(T_OBJECT, struct.pack("<II", type_, id_) + b"".join(props))


def enum_format_pod(width: int, height: int, rate: Fraction, video_format: int) -> bytes:
    """One EnumFormat param: raw video in ``video_format`` (an ``enum spa_video_format``)
    at one size and rate."""
    return _object(
        OBJECT_FORMAT,
        PARAM_ENUM_FORMAT,
        [
            _prop(FORMAT_MEDIA_TYPE, _id(MEDIA_TYPE_VIDEO)),
            _prop(FORMAT_MEDIA_SUBTYPE, _id(MEDIA_SUBTYPE_RAW)),
            _prop(FORMAT_VIDEO_FORMAT, _id(video_format)),
            _prop(FORMAT_VIDEO_SIZE, _pod(T_RECT, struct.pack("<II", width, height))),
            _prop(
                FORMAT_VIDEO_FRAMERATE,
                _pod(T_FRAC, struct.pack("<II", rate.numerator, rate.denominator)),
            ),
        ],
    )


def enum_format_pods(width: int, height: int, rate: Fraction) -> list[bytes]:
    """The formats offered: one EnumFormat param per entry of VIDEO_FORMATS, in order of
    preference. Not one param with a choice of formats: libwebrtc (Chromium, Firefox) skips
    a format given as a choice (``PipeWireNode::ParseFormat``), and a camera with no
    usable format is not listed at all."""
    return [enum_format_pod(width, height, rate, f) for f in VIDEO_FORMATS]


def buffers_pod(frame_bytes: int, stride: int) -> bytes:
    """The Buffers param: BUFFER_COUNT buffers of one block of ``frame_bytes``."""
    return _object(
        OBJECT_PARAM_BUFFERS,
        PARAM_BUFFERS,
        [
            _prop(BUFFERS_BUFFERS, _choice(CHOICE_RANGE, T_INT, list(BUFFER_COUNT))),
            _prop(BUFFERS_BLOCKS, _int(1)),
            _prop(BUFFERS_SIZE, _int(frame_bytes)),
            _prop(BUFFERS_STRIDE, _int(stride)),
            _prop(BUFFERS_DATATYPE, _choice(CHOICE_FLAGS, T_INT, [DATA_MEM_PTR | DATA_MEM_FD])),
        ],
    )


def format_of(pod: bytes) -> int | None:
    """The video format id in a Format object pod, or None when it has none."""
    if len(pod) < 16:
        return None
    size, type_ = struct.unpack_from("<II", pod)
    if type_ != T_OBJECT:
        return None
    end, at = min(len(pod), 8 + size), 16  # after the header and (object type, id)
    while at + 16 <= end:
        key, _flags, vsize, vtype = struct.unpack_from("<IIII", pod, at)
        value = at + 16
        if key == FORMAT_VIDEO_FORMAT:
            if vtype == T_ID and vsize >= 4:
                return int(struct.unpack_from("<I", pod, value)[0])
            if vtype == T_CHOICE and vsize >= 20:  # a choice: its first value is the default
                return int(struct.unpack_from("<I", pod, value + 16)[0])
            return None
        at = value + vsize + (-vsize % 8)
    return None


class _SpaChunk(ctypes.Structure):
    _fields_ = [
        ("offset", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("stride", ctypes.c_int32),
        ("flags", ctypes.c_int32),
    ]


class _SpaData(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fd", ctypes.c_int64),
        ("mapoffset", ctypes.c_uint32),
        ("maxsize", ctypes.c_uint32),
        ("data", ctypes.c_void_p),
        ("chunk", ctypes.POINTER(_SpaChunk)),
    ]


class _SpaBuffer(ctypes.Structure):
    _fields_ = [
        ("n_metas", ctypes.c_uint32),
        ("n_datas", ctypes.c_uint32),
        ("metas", ctypes.c_void_p),
        ("datas", ctypes.POINTER(_SpaData)),
    ]


class _PwBuffer(ctypes.Structure):
    _fields_ = [
        ("buffer", ctypes.POINTER(_SpaBuffer)),
        ("user_data", ctypes.c_void_p),
        ("size", ctypes.c_uint64),
        ("requested", ctypes.c_uint64),
    ]


_STATE_CHANGED = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p
)
_PARAM_CHANGED = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)


class _StreamEvents(ctypes.Structure):
    """struct pw_stream_events, version 2; only two callbacks are set."""

    _fields_ = [
        ("version", ctypes.c_uint32),
        ("destroy", ctypes.c_void_p),
        ("state_changed", _STATE_CHANGED),
        ("control_info", ctypes.c_void_p),
        ("io_changed", ctypes.c_void_p),
        ("param_changed", _PARAM_CHANGED),
        ("add_buffer", ctypes.c_void_p),
        ("remove_buffer", ctypes.c_void_p),
        ("process", ctypes.c_void_p),
        ("drained", ctypes.c_void_p),
        ("command", ctypes.c_void_p),
        ("trigger_done", ctypes.c_void_p),
    ]


_P = ctypes.c_void_p
#: name -> (restype, argtypes) of every libpipewire function called.
_SIGNATURES: dict[str, tuple[type | None, list[type]]] = {
    "pw_init": (None, [_P, _P]),
    "pw_get_library_version": (ctypes.c_char_p, []),
    "pw_thread_loop_new": (_P, [ctypes.c_char_p, _P]),
    "pw_thread_loop_get_loop": (_P, [_P]),
    "pw_thread_loop_start": (ctypes.c_int, [_P]),
    "pw_thread_loop_stop": (None, [_P]),
    "pw_thread_loop_destroy": (None, [_P]),
    "pw_thread_loop_lock": (None, [_P]),
    "pw_thread_loop_unlock": (None, [_P]),
    "pw_properties_new": (_P, [_P]),  # variadic; called with the terminating NULL only
    "pw_properties_set": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "pw_stream_new_simple": (_P, [_P, ctypes.c_char_p, _P, _P, _P]),
    "pw_stream_connect": (
        ctypes.c_int,
        [_P, ctypes.c_int, ctypes.c_uint32, ctypes.c_int, _P, ctypes.c_uint32],
    ),
    "pw_stream_update_params": (ctypes.c_int, [_P, _P, ctypes.c_uint32]),
    "pw_stream_get_state": (ctypes.c_int, [_P, _P]),
    "pw_stream_get_node_id": (ctypes.c_uint32, [_P]),
    "pw_stream_dequeue_buffer": (_P, [_P]),
    "pw_stream_queue_buffer": (ctypes.c_int, [_P, _P]),
    "pw_stream_trigger_process": (ctypes.c_int, [_P]),
    "pw_stream_disconnect": (ctypes.c_int, [_P]),
    "pw_stream_destroy": (None, [_P]),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def load_library() -> ctypes.CDLL:
    """libpipewire-0.3, typed and initialised once per process (``pw_init`` is not undone:
    the library keeps global state that a later sink in the same process would need).

    Raises:
        SinkError: the library is not installed, naming the package.
    """
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("pipewire-0.3") or LIBRARY)
        except OSError as e:
            raise SinkError(
                f"-o pipewire needs libpipewire-0.3, which was not found ({e}). {INSTALL_HINT}"
            ) from e
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        lib.pw_init(None, None)
        _lib = lib
        return lib


def socket_paths() -> list[Path]:
    """Where libpipewire connects, as it decides: each name in ``$PIPEWIRE_REMOTE`` (comma
    separated; default ``pipewire-0``), an absolute path as it is, a name inside the first
    of ``$PIPEWIRE_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR``, ``$USERPROFILE`` that is set (else
    ``/run/pipewire``, the system-wide daemon)."""
    names = [n.strip() for n in os.environ.get("PIPEWIRE_REMOTE", "").split(",") if n.strip()]
    runtime = next(
        (
            os.environ[v]
            for v in ("PIPEWIRE_RUNTIME_DIR", "XDG_RUNTIME_DIR", "USERPROFILE")
            if os.environ.get(v)
        ),
        "/run/pipewire",
    )
    return [Path(runtime) / n for n in names or ["pipewire-0"]]  # an absolute n replaces


def daemon_problem(timeout: float = 1.0) -> str | None:
    """None when a PipeWire daemon accepts a connection on :func:`socket_paths`, else why
    not (one phrase). Connecting and closing at once costs the daemon nothing; a socket
    left by a daemon that died refuses."""
    reasons = []
    for path in socket_paths():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(path))
            except FileNotFoundError:
                reasons.append(f"no PipeWire socket at {path}")
            except OSError as e:
                reasons.append(f"the PipeWire socket {path} does not answer ({e.strerror or e})")
            else:
                return None
    return "; ".join(reasons)


def preflight() -> None:
    """What :meth:`PipeWireSink.open` needs from the system, checked without publishing
    anything: libpipewire-0.3 loads and a daemon answers.

    Raises:
        SinkError: with the texts :meth:`~PipeWireSink.open` uses (:data:`INSTALL_HINT`,
            :data:`DAEMON_HINT`).
    """
    load_library()
    problem = daemon_problem()
    if problem:
        raise SinkError(f"cannot connect to the PipeWire daemon ({problem}). {DAEMON_HINT}")


class PipeWireSink(Sink):
    """Publishes frames as a PipeWire camera: a ``Video/Source`` node with
    ``media.role=Camera`` that browsers (through the camera portal), GStreamer's
    ``pipewiresrc`` and ``pw-v4l2`` list, with no kernel module.

    The node offers I420, NV12 and YUY2 at the run's size and rate; the consumer picks one.
    It drives its own graph (``DRIVER``): each :meth:`write` converts a frame (an I420
    picture for an I420 consumer needs no conversion; see
    :class:`~mattecam.sinks.convert.Converter`), copies it into a free buffer and triggers a
    cycle, so consumers get frames at the output clock's pace. A
    frame with no free buffer (nobody linked, or a consumer that stalls) is dropped, never
    waited for.

    When the daemon goes away (it restarts after a suspend, the session restarts) the
    stream fails or disconnects: the sink logs it once, drops frames, and on a later
    :meth:`write` (at most every :data:`RETRY_INTERVAL`) probes the socket and, once a
    daemon answers, publishes a new stream with the same node name; "republished" is
    logged when the daemon has accepted it. A retry never waits for the daemon: it costs a
    socket probe (at most :data:`PROBE_TIMEOUT`) and, when that answers, a stream
    creation, a few ms. A stream that stays connecting for :data:`CONNECT_TIMEOUT` is
    retried too.

    Threads: libpipewire runs its own loop thread, which calls the state and format
    callbacks; those only store plain values (an int, a format id, a flag) that the output
    thread reads, and every libpipewire call from Python holds the thread-loop lock (the
    callbacks run with it held). :attr:`viewers` is 1 while the stream is streaming (a
    consumer is linked and running) and 0 otherwise, so the pipeline pauses while nobody
    watches.
    """

    live = True
    wants_placeholder = True

    def __init__(self, node_name: str = "mattecam", description: str = "mattecam") -> None:
        self.node_name = node_name or "mattecam"
        self.description = description
        self.frames_dropped = 0
        self._lib: ctypes.CDLL | None = None
        self._loop: int | None = None
        self._stream: int | None = None
        self._started = False
        self._closing = False
        self._tearing = False  # a stream is being destroyed on purpose: not a loss
        self._lost = False  # the stream failed or the daemon went away; write() republishes
        self._republishing = False  # a new stream was published after a loss
        self._published_at = 0.0
        self._retry_at = 0.0
        self._rate = Fraction(30)
        self._size = (0, 0)
        self._state = STATE_UNCONNECTED
        self._error = ""
        self._format: int | None = None  # the negotiated spa_video_format, or None
        self._converters: dict[int, Converter] = {}
        self._keep: list[object] = []  # pods and callbacks libpipewire points into

    # --- setup ---------------------------------------------------------------------------

    def check(self) -> None:
        preflight()

    def open(self, size: tuple[int, int], fps: float) -> None:
        w, h = size
        if w % 2 or h % 2:
            raise ConfigError(
                f"-o pipewire needs an even size (I420, NV12 and YUY2 are 4:2:x), and {w}x{h} "
                "is not. Choose one with --width/--height."
            )
        lib = load_library()
        self._lib, self._size = lib, size
        self._converters = {
            sid: Converter(pixel_format(n), w, h) for sid, n in VIDEO_FORMATS.items()
        }
        try:
            self._connect(lib, w, h, Fraction(fps).limit_denominator(1001))
        except BaseException:
            self.close()
            raise

    def _connect(self, lib: ctypes.CDLL, w: int, h: int, rate: Fraction) -> None:
        self._rate = rate
        self._loop = lib.pw_thread_loop_new(b"mattecam-pw", None)
        if not self._loop:
            raise SinkError("PipeWire: could not create a thread loop")
        if lib.pw_thread_loop_start(self._loop) < 0:
            raise SinkError("PipeWire: could not start the thread loop")
        self._started = True
        self._publish()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self._state in (STATE_UNCONNECTED, STATE_CONNECTING) and not self._lost:
            if time.monotonic() > deadline:
                raise SinkError(
                    f"the PipeWire daemon did not accept the camera node within "
                    f"{CONNECT_TIMEOUT:.0f} s. {DAEMON_HINT}"
                )
            time.sleep(0.01)
        if self._state == STATE_ERROR or self._lost:
            raise SinkError(
                f"PipeWire refused the camera node: {self._error or 'disconnected'}. {DAEMON_HINT}"
            )
        log.info(
            "PipeWire camera %r (%s, libpipewire %s): I420/NV12/YUY2 %dx%d at %s fps",
            self.node_name,
            self.description,
            (lib.pw_get_library_version() or b"?").decode(),
            w,
            h,
            rate,
        )

    def _publish(self) -> None:
        """Create and connect the stream (the node) on the running thread loop; returns
        without waiting for the daemon to accept it.

        Raises:
            SinkError: the stream could not be made or connected (it is destroyed).
        """
        lib, loop = self._lib, self._loop
        assert lib is not None and loop is not None
        w, h = self._size
        events = _StreamEvents(version=2)
        events.state_changed = _STATE_CHANGED(self._on_state_changed)
        events.param_changed = _PARAM_CHANGED(self._on_param_changed)
        self._keep.append(events)
        params, n = self._params(enum_format_pods(w, h, self._rate))
        self._state, self._error, self._format, self._lost = STATE_UNCONNECTED, "", None, False
        self._published_at = time.monotonic()
        lib.pw_thread_loop_lock(loop)
        try:
            props = lib.pw_properties_new(None)
            for key, value in [
                ("media.class", "Video/Source"),
                ("media.role", "Camera"),
                ("media.type", "Video"),
                ("media.category", "Capture"),
                ("node.name", self.node_name),
                ("node.description", self.description),
                ("application.name", "mattecam"),
            ]:
                lib.pw_properties_set(props, key.encode(), value.encode())
            # The stream takes ownership of props, even on failure.
            self._stream = lib.pw_stream_new_simple(
                lib.pw_thread_loop_get_loop(loop),
                self.node_name.encode(),
                props,
                ctypes.byref(events),
                None,
            )
            res = -1
            if self._stream:
                res = lib.pw_stream_connect(
                    self._stream,
                    DIRECTION_OUTPUT,
                    ID_ANY,
                    FLAG_DRIVER | FLAG_MAP_BUFFERS,
                    params,
                    n,
                )
        finally:
            lib.pw_thread_loop_unlock(loop)
        if not self._stream:
            self._stream = None
            raise SinkError(f"PipeWire: could not create a stream. {DAEMON_HINT}")
        if res < 0:
            self._unpublish()
            reason = os.strerror(-res)
            raise SinkError(f"cannot connect to the PipeWire daemon ({reason}). {DAEMON_HINT}")

    def _unpublish(self) -> None:
        """Disconnect and destroy the stream, if any (its node leaves the graph)."""
        lib, loop, stream = self._lib, self._loop, self._stream
        self._stream = None
        if lib is None or stream is None:
            return
        locked = loop is not None and self._started
        self._tearing = True
        if locked:
            lib.pw_thread_loop_lock(loop)
        try:
            lib.pw_stream_disconnect(stream)
            lib.pw_stream_destroy(stream)
        finally:
            if locked:
                lib.pw_thread_loop_unlock(loop)
            self._tearing = False
        self._format = None
        self._state = STATE_UNCONNECTED
        self._keep.clear()

    def _retry(self) -> None:
        """After a loss, on the output thread: republish when a daemon answers, at most
        every :data:`RETRY_INTERVAL`; never waits for the daemon."""
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._retry_at = now + RETRY_INTERVAL
        self._unpublish()
        problem = daemon_problem(PROBE_TIMEOUT)
        if problem:
            log.debug("PipeWire not back yet: %s", problem)
            return
        try:
            self._publish()
        except SinkError as e:
            log.debug("republishing failed, retrying: %s", e)
            self._lost = True
            return
        self._republishing = True

    def _params(self, pods: list[bytes]) -> tuple[ctypes.Array[ctypes.c_void_p], int]:
        """An array of ``const struct spa_pod *`` for ``pods``, kept alive with the sink."""
        bufs = [ctypes.create_string_buffer(p, len(p)) for p in pods]
        array = (ctypes.c_void_p * len(bufs))(
            *[ctypes.cast(b, ctypes.c_void_p).value for b in bufs]
        )
        self._keep.extend([*bufs, array])
        return array, len(bufs)

    # --- callbacks (libpipewire's loop thread; nothing may raise into C) -----------------

    def _on_state_changed(
        self, _data: int | None, old: int, state: int, error: bytes | None
    ) -> None:
        try:
            self._state = state
            if state == STATE_ERROR:
                self._error = (error or b"unknown error").decode(errors="replace")
            log.debug(
                "PipeWire stream %s -> %s%s",
                STATE_NAMES.get(old, old),
                STATE_NAMES.get(state, state),
                f" ({self._error})" if state == STATE_ERROR else "",
            )
            if self._closing or self._tearing:
                return
            gone = state == STATE_ERROR or (old > STATE_UNCONNECTED and state == STATE_UNCONNECTED)
            if gone and not self._lost:
                self._lost = True
                if not self._republishing:  # one warning per loss, not per retry
                    log.warning(
                        "PipeWire went away (%s); republishing the camera %r when it is back",
                        self._error or "disconnected",
                        self.node_name,
                    )
                    self._republishing = True
            elif state >= STATE_PAUSED and self._republishing:
                self._republishing = False
                log.warning("PipeWire is back: republished the camera %r", self.node_name)
        except BaseException:  # an exception must not unwind into C
            log.exception("PipeWire state callback failed")

    def _on_param_changed(self, _data: int | None, id_: int, param: int | None) -> None:
        try:
            if id_ != PARAM_FORMAT or self._lib is None or self._stream is None:
                return
            if not param:
                self._format = None
                return
            size = struct.unpack("<I", ctypes.string_at(param, 4))[0]
            fmt = format_of(ctypes.string_at(param, 8 + size))
            if fmt not in VIDEO_FORMATS:
                log.warning("PipeWire consumer chose an unsupported format %s", fmt)
                self._format = None
                return
            w, h = self._size
            conv = self._converters[fmt]
            stride = w * 2 if VIDEO_FORMATS[fmt] == "yuyv" else w
            params, n = self._params([buffers_pod(conv.fmt.frame_bytes(w, h), stride)])
            self._lib.pw_stream_update_params(self._stream, params, n)
            self._format = fmt
            log.info("PipeWire consumer linked: %s %dx%d", SPA_NAMES[fmt], w, h)
        except BaseException:  # an exception must not unwind into C
            log.exception("PipeWire format callback failed")

    # --- writing -------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        lib, loop = self._lib, self._loop
        if lib is None or loop is None:
            raise SinkError("the PipeWire camera is not open")
        if (
            self._lost
            or self._stream is None
            or (
                self._state == STATE_CONNECTING
                and time.monotonic() - self._published_at > CONNECT_TIMEOUT
            )
        ):
            self._lost = True
            self.frames_dropped += 1
            self._retry()
            return
        stream, fmt = self._stream, self._format
        if fmt is None or self._state != STATE_STREAMING:
            return  # nobody linked: nothing to fill
        t = time.perf_counter()
        data = self._converters[fmt].convert(frame.image)
        frame.timings["convert"] = (time.perf_counter() - t) * 1e3
        stride = self._size[0] * 2 if VIDEO_FORMATS[fmt] == "yuyv" else self._size[0]
        lib.pw_thread_loop_lock(loop)
        try:
            ptr = lib.pw_stream_dequeue_buffer(stream)
            if not ptr:
                self.frames_dropped += 1  # every buffer is with the consumer: drop, not wait
                return
            d = _PwBuffer.from_address(ptr).buffer.contents.datas[0]
            ok = fmt == self._format and d.data and d.maxsize >= data.nbytes
            chunk = d.chunk.contents
            chunk.offset, chunk.stride = 0, stride
            chunk.size = data.nbytes if ok else 0
            if ok:
                ctypes.memmove(d.data, data.ctypes.data, data.nbytes)
            lib.pw_stream_queue_buffer(stream, ptr)
            lib.pw_stream_trigger_process(stream)
        finally:
            lib.pw_thread_loop_unlock(loop)
        if ok:
            self.frames_written += 1
        else:
            self.frames_dropped += 1

    @property
    def viewers(self) -> int | None:
        """1 while a consumer streams from the node, else 0 (read by the output thread)."""
        return 1 if self._state == STATE_STREAMING else 0

    # --- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        lib, loop = self._lib, self._loop
        if lib is None or (loop is None and self._stream is None):
            return
        self._closing = True
        had_stream = self._stream is not None
        self._unpublish()
        self._loop = None
        if loop is not None:
            if self._started:
                lib.pw_thread_loop_stop(loop)
            lib.pw_thread_loop_destroy(loop)
        self._started = False
        if had_stream:
            log.info(
                "PipeWire camera %r released (%d frames, %d dropped)",
                self.node_name,
                self.frames_written,
                self.frames_dropped,
            )

    def describe(self) -> str:
        return f"PipeWire camera {self.node_name!r} ({self.description})"
