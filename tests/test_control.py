"""The control server: every API action and every rejection, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import write_clip
from mattecam import cli
from mattecam.app import LiveSession
from mattecam.config import Settings
from mattecam.configfile import LoadedConfig
from mattecam.control.library import Library
from mattecam.control.paths import runtime_file
from mattecam.control.server import ControlServer
from mattecam.frame import Frame
from mattecam.imaging.yuv import as_bgr
from mattecam.sinks import NullSink

FPS = 20.0


class TimedSink(NullSink):
    """Records when each frame was written and the colour of its bottom-right pixel (BGR),
    which the synthetic clip leaves to the background."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.corners: list[tuple[int, int, int]] = []

    def write(self, frame: Frame) -> None:
        super().write(frame)
        self.times.append(time.monotonic())
        b, g, r = (int(v) for v in as_bgr(frame.image)[-4, -4])
        self.corners.append((b, g, r))


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def private_xdg(root: Path, mp: pytest.MonkeyPatch) -> Path:
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        d = root / name.lower()
        d.mkdir()
        mp.setenv(name, str(d))
    return root


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private XDG directories, so tests never touch the user's config, data or runtime."""
    return private_xdg(tmp_path, monkeypatch)


def live_settings(clip: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "input": str(clip),
        "outputs": ("null",),
        "loop": True,
        "fps": FPS,
        "background": "green",
        "refine": "bilinear",
        "temporal": False,
        "control": True,
        "control_port": 0,
    }
    base.update(kw)
    return Settings(**base)


@contextmanager
def running(
    settings: Settings, *, config: LoadedConfig | None = None
) -> Iterator[tuple[LiveSession, TimedSink]]:
    """A real live session (pipeline, control server, config watcher) on its own thread."""
    sink = TimedSink()
    session = LiveSession(settings, config=config, extra_sinks=[sink])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            session.pipeline.run()
        except BaseException as e:
            errors.append(e)

    runner = threading.Thread(target=run, name="test-pipeline")
    with session:
        runner.start()
        try:
            wait_for(lambda: sink.frames_written >= 5 or errors, what="first frames")
            yield session, sink
        finally:
            session.pipeline.stop()
            runner.join(10)
    assert not runner.is_alive()
    assert not errors, errors


@pytest.fixture
def clip20(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip20.mp4", n=20, fps=FPS)


@pytest.fixture
def live(xdg: Path, clip20: Path, landscape_model: Path) -> Iterator[tuple[LiveSession, TimedSink]]:
    with running(live_settings(clip20)) as pair:
        yield pair


def request(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    json_body: object = None,
    headers: dict[str, str] | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request to 127.0.0.1:port; ``host`` replaces the Host header."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None and host != "":
            conn.putheader("Host", host)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            conn.putheader("Content-Type", "application/json")
        if token is not None:
            conn.putheader("X-Mattecam-Token", token)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None and not any(k.lower() == "content-length" for k in headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Api:
    """Calls to one session's control server with its token."""

    def __init__(self, session: LiveSession) -> None:
        assert session.server is not None
        self.server = session.server
        self.port = session.server.port
        self.token = session.server.token

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, "GET", path, token=self.token, **kw)

    def post(self, path: str, payload: object = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        status, _, data = request(
            self.port, "POST", path, token=self.token, json_body=payload, **kw
        )
        return status, json.loads(data)

    def preview_corner(self) -> tuple[int, int, int]:
        status, headers, data = self.get("/api/preview.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        b, g, r = (int(v) for v in image[-4, -4])
        return b, g, r


def png(colour_bgr: tuple[int, int, int], size: tuple[int, int] = (64, 36)) -> bytes:
    w, h = size
    ok, data = cv2.imencode(".png", np.full((h, w, 3), colour_bgr, np.uint8))
    assert ok
    return bytes(data)


def near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def max_gap(times: list[float], since: float) -> float:
    t = np.array([x for x in times if x >= since])
    assert len(t) > 10
    return float(np.diff(t).max())


# --- serving -------------------------------------------------------------------------------


def test_page_and_static_files_are_served_with_a_strict_policy(
    live: tuple[LiveSession, TimedSink],
) -> None:
    api = Api(live[0])
    status, headers, body = request(api.port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="/app.js"' in body and b"http" not in body.split(b"<body>")[1]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in headers
    assert api.token.encode() not in body  # the page holds no secret
    for path, ctype in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = request(api.port, "GET", path)
        assert status == 200 and headers["content-type"].startswith(ctype) and body


def test_binds_loopback_only_and_publishes_port_and_token(
    live: tuple[LiveSession, TimedSink],
) -> None:
    session = live[0]
    assert session.server is not None
    assert session.server._httpd.socket.getsockname()[0] == "127.0.0.1"
    path = runtime_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {"port": session.server.port, "token": session.server.token, "pid": os.getpid()}
    assert session.control_url == (
        f"http://127.0.0.1:{session.server.port}/?token={session.server.token}"
    )


def test_close_is_idempotent_and_stops_the_thread(
    live: tuple[LiveSession, TimedSink], tmp_path: Path
) -> None:
    server = ControlServer(live[0].controller, port=0, library=Library(tmp_path / "lib"))
    server.start()
    threads = {t for t in threading.enumerate() if t.name == "control-http"}
    assert len(threads) == 2  # the session's server and this one
    port = server.port
    assert request(port, "GET", "/")[0] == 200
    server.close()
    server.close()
    assert {t for t in threading.enumerate() if t.name == "control-http"} < threads
    with pytest.raises(OSError):
        request(port, "GET", "/")


def test_busy_port_is_a_clear_error(live: tuple[LiveSession, TimedSink]) -> None:
    from mattecam.errors import ConfigError

    api = Api(live[0])
    with pytest.raises(ConfigError, match=f"127.0.0.1:{api.port}.*--control-port"):
        ControlServer(live[0].controller, port=api.port)


# --- actions ---------------------------------------------------------------------------------


def test_status_reports_rates_latency_drops_and_viewers(
    live: tuple[LiveSession, TimedSink],
) -> None:
    api = Api(live[0])
    time.sleep(0.6)
    status, headers, data = api.get("/api/status")
    assert status == 200 and headers["content-type"] == "application/json"
    s = json.loads(data)
    assert 10 < s["fps"]["out"] < 40  # ~20 fps
    assert s["fps"]["in"] > 5 and s["fps"]["processed"] > 5
    assert s["cpu_percent"] is not None and s["cpu_percent"] > 0
    assert s["latency_ms"]["p50"] > 0
    assert set(s["dropped"]) == {"before_process", "before_output"}
    assert s["frames"]["written"] > 5
    assert s["watching"] is None  # the null sink cannot tell
    assert s["paused"] is False and s["live"] is True
    assert s["settings"]["background_info"] == {"kind": "color", "color": "#00ff00"}


def test_preview_is_the_newest_output_frame(live: tuple[LiveSession, TimedSink]) -> None:
    api = Api(live[0])
    assert near(api.preview_corner(), (0, 255, 0))
    _, _, data = api.get("/api/preview.jpg")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (96, 160, 3)


def test_background_kinds_switch_live(live: tuple[LiveSession, TimedSink], xdg: Path) -> None:
    session, sink = live
    api = Api(session)
    status, answer = api.post("/api/background", {"kind": "color", "color": "#ff0000"})
    assert status == 200, answer
    assert answer["settings"]["background"] == "#ff0000"
    wait_for(lambda: near(api.preview_corner(), (0, 0, 255)), what="red preview")
    wait_for(lambda: near(sink.corners[-1], (0, 0, 255)), what="red output")

    status, answer = api.post("/api/background", {"kind": "blur", "strength": 30})
    assert status == 200, answer
    assert answer["settings"]["background"] == "blur"
    assert answer["settings"]["blur_strength"] == 30

    status, answer = api.post("/api/background", {"kind": "off"})
    assert status == 200 and answer["settings"]["background"] == "none"
    assert answer["settings"]["background_info"] == {"kind": "off"}

    library = xdg / "xdg_data_home" / "mattecam" / "backgrounds"
    library.mkdir(parents=True)
    write_clip(library / "waves.mp4", n=4)
    status, answer = api.post("/api/background", {"kind": "video", "name": "waves.mp4"})
    assert status == 200, answer
    assert answer["settings"]["background"] == str(library / "waves.mp4")
    assert answer["settings"]["background_info"]["name"] == "waves.mp4"
    assert str(session.controller.settings.background) == str(library / "waves.mp4")


def test_upload_stores_under_a_server_chosen_name_and_applies(
    live: tuple[LiveSession, TimedSink], xdg: Path
) -> None:
    api = Api(live[0])
    blue = png((255, 0, 0))
    status, _, data = request(
        api.port,
        "POST",
        "/api/upload",
        token=api.token,
        body=blue,
        headers={"Content-Type": "image/png"},
    )
    assert status == 201, data
    entry = json.loads(data)
    library = xdg / "xdg_data_home" / "mattecam" / "backgrounds"
    assert entry["name"].startswith("bg-") and entry["name"].endswith(".png")
    assert (library / entry["name"]).read_bytes() == blue
    assert [p.name for p in library.iterdir()] == [entry["name"]]  # no temporary left
    # The same picture again is the same entry.
    status, _, data = request(api.port, "POST", "/api/upload", token=api.token, body=blue)
    assert json.loads(data)["name"] == entry["name"]

    status, _, data = api.get("/api/backgrounds")
    listing = json.loads(data)
    assert listing["backgrounds"] == [{"name": entry["name"], "kind": "image", "bytes": len(blue)}]
    status, headers, thumb = api.get(f"/api/backgrounds/{entry['name']}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR).shape[1] == 160

    status, answer = api.post("/api/background", {"kind": "image", "name": entry["name"]})
    assert status == 200, answer
    wait_for(lambda: near(api.preview_corner(), (255, 0, 0)), what="blue preview")
    assert answer["settings"]["background_info"]["name"] == entry["name"]

    green = png((0, 200, 0))
    status, _, data = request(api.port, "POST", "/api/upload?apply=1", token=api.token, body=green)
    assert status == 201
    wait_for(lambda: near(api.preview_corner(), (0, 200, 0)), what="uploaded preview")


def test_live_settings_and_restart_keys(live: tuple[LiveSession, TimedSink]) -> None:
    session, _ = live
    api = Api(session)
    status, answer = api.post(
        "/api/settings",
        {"mirror": True, "blur_strength": 40, "refine": "guided", "light_wrap": 0.5},
    )
    assert status == 200, answer
    assert sorted(answer["applied"]) == ["blur_strength", "light_wrap", "mirror", "refine"]
    s = session.controller.settings
    assert (s.mirror, s.blur_strength, s.refine, s.light_wrap) == (True, 40.0, "guided", 0.5)
    wait_for(lambda: session.pipeline.processor.mirror, what="mirror applied")
    status, _, data = api.get("/api/settings")
    view = json.loads(data)
    assert status == 200 and view["mirror"] is True and view["refine"] == "guided"
    status, answer = api.post("/api/settings", {"fps": 10})
    assert status == 400 and "restart" in answer["error"]
    assert session.controller.settings.fps == FPS


def test_pause_still_and_brb_then_resume(live: tuple[LiveSession, TimedSink]) -> None:
    session = live[0]
    api = Api(session)
    status, answer = api.post("/api/pause", {"kind": "brb"})
    assert status == 200 and answer == {"paused": "brb"}
    wait_for(lambda: session.pipeline.paused)
    mark = session.pipeline.metrics.processed
    time.sleep(0.3)
    assert session.pipeline.metrics.processed <= mark + 1  # nothing processed while paused
    s = json.loads(api.get("/api/status")[2])
    assert s["paused"] is True and s["pause"] == "brb"
    assert not near(api.preview_corner(), (0, 255, 0))  # the card, not the green picture

    status, _ = api.post("/api/pause", {"kind": "still"})
    assert status == 200
    wait_for(lambda: near(api.preview_corner(), (0, 255, 0)), what="frozen green frame")
    status, answer = api.post("/api/resume", {})
    assert status == 200 and answer == {"paused": None}
    assert not session.pipeline.paused
    mark = session.pipeline.metrics.processed
    wait_for(lambda: session.pipeline.metrics.processed > mark + 3, what="processing again")


def test_pause_before_the_input_opens_is_a_conflict(
    xdg: Path, clip20: Path, landscape_model: Path
) -> None:
    session = LiveSession(live_settings(clip20))
    try:
        with session:
            api = Api(session)
            status, answer = api.post("/api/pause", {"kind": "brb"})
            assert status == 409 and "not open yet" in answer["error"]
            assert api.get("/api/preview.jpg")[0] == 503
    finally:
        session.close()  # the pipeline never ran: closing it releases the model


def test_live_change_does_not_interrupt_output(live: tuple[LiveSession, TimedSink]) -> None:
    """Background, model and mirror changed through the API while frames flow: the sink's
    counter keeps rising and no gap exceeds three frame intervals."""
    session, sink = live
    api = Api(session)
    start = time.monotonic()
    time.sleep(0.3)
    before = sink.frames_written
    status, answer = api.post("/api/background", {"kind": "color", "color": "#0000ff"})
    assert status == 200, answer
    status, answer = api.post("/api/settings", {"model": "general", "mirror": True})
    assert status == 200 and sorted(answer["applied"]) == ["mirror", "model"], answer
    wait_for(lambda: near(sink.corners[-1], (255, 0, 0)), what="blue output")
    time.sleep(0.4)
    first_blue = next(i for i, c in enumerate(sink.corners) if near(c, (255, 0, 0)))
    assert before <= first_blue < sink.frames_written - 5  # frames kept coming, new look
    # The clock repeats a frame after 1.25 intervals when nothing new came; the rest is
    # room for a busy machine's scheduling. A stalled or reopened output takes far longer.
    assert max_gap(sink.times, start) < 3 / FPS
    assert session.pipeline.processor.matting.segmenter.input_size == (256, 256)


# --- mattecam ctl ----------------------------------------------------------------------------


def ctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["ctl", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ctl_commands(
    live: tuple[LiveSession, TimedSink], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = live[0]
    code, out, _ = ctl(capsys, "status")
    assert code == 0 and "fps" in out and "background: colour #00ff00" in out
    code, out, _ = ctl(capsys, "status", "--json")
    assert json.loads(out)["settings"]["background"] == "#00ff00"  # green, as the API says it
    assert ctl(capsys, "url")[1].strip() == session.control_url
    assert ctl(capsys, "background", "color", "red")[1].strip() == "background: colour #ff0000"
    assert ctl(capsys, "background", "blur", "--strength", "25")[0] == 0
    assert session.controller.settings.blur_strength == 25
    assert ctl(capsys, "blur", "33")[0] == 0
    assert session.controller.settings.blur_strength == 33
    picture = tmp_path / "beach.jpg"
    cv2.imwrite(str(picture), np.full((40, 60, 3), (10, 150, 250), np.uint8))
    code, out, _ = ctl(capsys, "background", "image", str(picture))
    assert code == 0 and out.startswith("background: image bg-")
    code, out, _ = ctl(capsys, "list")
    assert "image  bg-" in out
    assert ctl(capsys, "upload", str(picture), "--apply")[0] == 0
    assert ctl(capsys, "set", "mirror=true", "light_wrap=0.25")[1].strip() == (
        "applied: light_wrap, mirror"
    )
    assert ctl(capsys, "pause", "still")[0] == 0 and session.pipeline.paused
    assert ctl(capsys, "resume")[0] == 0 and not session.pipeline.paused
    jpeg = tmp_path / "preview.jpg"
    assert ctl(capsys, "preview", str(jpeg))[0] == 0
    assert cv2.imread(str(jpeg)) is not None
    code, _, err = ctl(capsys, "set", "fps=10")
    assert code != 0 and "restart" in err
    code, _, err = ctl(capsys, "--port", str(session.server.port), "--token", "bad", "status")  # type: ignore[union-attr]
    assert code != 0 and "token" in err


def test_ctl_without_a_running_mattecam(xdg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = ctl(capsys, "status")
    assert code != 0 and "--control" in err


def test_command_line_run_with_control_and_ctl(
    xdg: Path, clip20: Path, landscape_model: Path
) -> None:
    """The real command: mattecam --control prints the page's address, ctl talks to it, and
    SIGTERM stops it cleanly, removing the endpoint file."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mattecam",
            "-i",
            str(clip20),
            "--loop",
            "-o",
            "null",
            "--control",
            "--control-port",
            "0",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(runtime_file().is_file, timeout=30, what="control endpoint")
        r = subprocess.run(
            [sys.executable, "-m", "mattecam", "ctl", "background", "color", "#0000ff"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert "colour #0000ff" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err  # a clean stop by signal
    assert "control page: http://127.0.0.1:" in err and "?token=" in err
    assert not runtime_file().exists()


# --- rejections ------------------------------------------------------------------------------
# These share one session (they must leave it unchanged, and each asserts so). It is first
# used here, at the end of the module, so its pipeline never runs beside another session's.


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, landscape_model: Path
) -> Iterator[tuple[LiveSession, TimedSink]]:
    root = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as mp:
        private_xdg(root, mp)
        clip = write_clip(root / "clip.mp4", n=20, fps=10)
        with running(live_settings(clip, fps=10)) as pair:
            yield pair


def unchanged(session: LiveSession) -> bool:
    s = session.controller.settings
    return (str(s.background), s.mirror, s.blur_strength, session.pipeline.paused) == (
        "#00ff00",
        False,
        12.0,
        False,
    )


def test_foreign_host_is_refused(shared: tuple[LiveSession, TimedSink]) -> None:
    """DNS rebinding: a page on another name that resolves to 127.0.0.1."""
    api = Api(shared[0])
    hosts = [
        "evil.example",
        f"evil.example:{api.port}",
        "127.0.0.1:1",
        "127.0.0.1",
        f"localhost.evil.example:{api.port}",
        f"127.0.0.1.nip.io:{api.port}",
        "",
    ]
    for host in hosts:
        for method, path in (("GET", "/"), ("GET", "/api/status"), ("POST", "/api/pause")):
            status, _, data = request(
                api.port, method, path, token=api.token, host=host, json_body={"kind": "brb"}
            )
            assert status == 403, (host, method, path, data)
            assert b"Host" in data
    assert unchanged(shared[0])


def test_local_hosts_are_accepted(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    for host in (
        f"127.0.0.1:{api.port}",
        f"localhost:{api.port}",
        f"LOCALHOST:{api.port}",
        f"[::1]:{api.port}",
    ):
        assert request(api.port, "GET", "/api/status", token=api.token, host=host)[0] == 200


def test_cross_site_requests_are_refused(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": f"https://127.0.0.1:{api.port}"},
        {"Origin": f"http://evil.example:{api.port}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        for path, payload in (
            ("/api/background", {"kind": "color", "color": "#123456"}),
            ("/api/settings", {"mirror": True}),
            ("/api/pause", {"kind": "brb"}),
        ):
            status, answer = api.post(path, payload, headers=headers)
            assert status == 403, (headers, path, answer)
        assert api.get("/api/preview.jpg", headers=headers)[0] == 403
    assert unchanged(shared[0])
    status, _ = api.post(
        "/api/resume",
        {},
        headers={"Origin": f"http://127.0.0.1:{api.port}", "Sec-Fetch-Site": "same-origin"},
    )
    assert status == 200  # the page's own requests are fine


def test_token_is_required(shared: tuple[LiveSession, TimedSink]) -> None:
    session = shared[0]
    api = Api(session)
    calls: list[tuple[str, str, object]] = [
        ("POST", "/api/background", {"kind": "off"}),
        ("POST", "/api/settings", {"mirror": True}),
        ("POST", "/api/pause", {"kind": "brb"}),
        ("POST", "/api/resume", {}),
        ("POST", "/api/upload", None),
        ("GET", "/api/preview.jpg", None),
        ("GET", "/api/status", None),
        ("GET", "/api/settings", None),
        ("GET", "/api/backgrounds", None),
    ]
    for token in (None, "", "wrong", api.token[:-1], api.token + "x", api.token.upper()):
        for method, path, payload in calls:
            body = png((0, 0, 0)) if path == "/api/upload" else None
            status, _, data = request(
                api.port, method, path, token=token, json_body=payload, body=body
            )
            assert status == 401, (token, path, data)
            assert b"token" in data
    assert unchanged(session)
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "mattecam" / "backgrounds").exists()


def test_upload_limits_and_decoding(shared: tuple[LiveSession, TimedSink], tmp_path: Path) -> None:
    library = Library(tmp_path / "lib", max_upload=4096)
    with ControlServer(shared[0].controller, port=0, library=library, token="t0ken") as server:
        port = server.port

        def upload(body: bytes, **kw: Any) -> tuple[int, bytes]:
            status, _, data = request(port, "POST", "/api/upload", token="t0ken", body=body, **kw)
            return status, data

        # Announced too large: refused before the body is read.
        status, data = upload(b"", headers={"Content-Length": str(50 * 1024 * 1024)})
        assert status == 413 and b"at most 4096 bytes" in data
        # Really too large.
        noise = np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8)
        big = bytes(cv2.imencode(".png", noise)[1])
        assert len(big) > 4096
        assert upload(big)[0] == 413
        # Not pictures: text, a script, an SVG, a truncated PNG, a GIF, an empty body.
        for junk in (
            b"hello",
            b"#!/bin/sh\nrm -rf /\n",
            b"<svg xmlns='x'></svg>",
            png((1, 2, 3))[:40],
            b"GIF89a" + bytes(30),
            b"",
        ):
            status, data = upload(junk)
            assert status == 415, (junk[:10], data)
            assert b"JPEG, PNG, WebP or BMP" in data
        # Chunked bodies have no length to check.
        status, data = upload(b"", headers={"Transfer-Encoding": "chunked"})
        assert status == 411
        assert not library.root.exists()  # nothing was written anywhere
        status, data = upload(png((9, 9, 9)))
        assert status == 201
        assert [p.parent for p in library.root.iterdir()] == [library.root]
    assert unchanged(shared[0])


def test_bad_background_requests_are_refused(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    for payload in (
        {"kind": "image", "name": "../../../../etc/passwd"},
        {"kind": "image", "name": "/etc/hostname"},
        {"kind": "image", "name": "..png"},
        {"kind": "image", "name": ".hidden.png"},
        {"kind": "image", "name": "a/b.png"},
        {"kind": "image", "name": "missing.png"},
        {"kind": "video", "name": "missing.png"},
        {"kind": "image"},
        {"kind": "image", "name": 3},
        {"kind": "image", "path": "/etc/hostname"},
        {"kind": "file", "name": "x.png"},
        {"kind": "color", "color": "not-a-colour"},
        {"kind": "color"},
        {"kind": "blur", "strength": 500},
        {"kind": "blur", "strength": "strong"},
        {},
    ):
        status, answer = api.post("/api/background", payload)
        assert status in (400, 404), (payload, answer)
        assert answer["error"]
    status, answer = api.post("/api/background", {"kind": "blur", "strength": 500})
    assert answer["error"].startswith("strength must be between 0 and 100"), answer  # its field
    assert unchanged(shared[0])


def test_no_client_path_reaches_the_file_system(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    for path in (
        "/api/backgrounds/..%2F..%2Fetc%2Fpasswd",
        "/api/backgrounds/%2Fetc%2Fhostname",
        "/api/backgrounds/../../etc/passwd",
        "/../../etc/passwd",
        "/static/../cli.py",
        "/app.js/../../cli.py",
    ):
        status, _, data = api.get(path)
        assert status in (400, 404), (path, data)
        assert b"root:" not in data and b"import" not in data
    for payload in ({"background": "/etc/hostname"}, {"model": "/tmp/evil.tflite"}):
        status, answer = api.post("/api/settings", payload)
        assert status == 400, answer
    assert unchanged(shared[0])


def test_bad_settings_are_refused(shared: tuple[LiveSession, TimedSink]) -> None:
    session = shared[0]
    before = session.controller.settings
    for payload, fragment in (
        ({"mirror": "yes"}, "true or false"),
        ({"blur_strength": 101}, "blur_strength must be between 0 and 100"),  # not --blur
        ({"threads": 0}, "threads must be between 1 and 16"),
        ({"refine": "magic"}, "refine"),
        ({"model": "huge"}, "model must be one of"),
        ({"fps": 10}, "restart"),
        ({"input": "/dev/video0"}, "restart"),
        ({"nonsense": 1}, "nonsense"),
    ):
        status, answer = Api(session).post("/api/settings", payload)
        assert status == 400, answer
        assert fragment in answer["error"], (payload, answer)
    assert session.controller.settings == before


def test_malformed_requests_are_refused(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    status, _, data = request(
        api.port,
        "POST",
        "/api/pause",
        token=api.token,
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and b"not valid JSON" in data
    status, _, data = request(
        api.port,
        "POST",
        "/api/pause",
        token=api.token,
        body=b"kind=brb",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415  # an HTML form cannot post JSON
    status, _, data = request(
        api.port,
        "POST",
        "/api/pause",
        token=api.token,
        body=b"[1]",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    status, _, _ = request(
        api.port,
        "POST",
        "/api/settings",
        token=api.token,
        body=b" " * (65 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert status == 413
    assert api.post("/api/pause", {"kind": "forever"})[0] == 400
    assert unchanged(shared[0])


def test_methods_and_unknown_paths(shared: tuple[LiveSession, TimedSink]) -> None:
    api = Api(shared[0])
    assert api.get("/api/nothing")[0] == 404
    assert api.get("/api/background")[0] == 405
    assert request(api.port, "DELETE", "/api/status", token=api.token)[0] == 405
    assert request(api.port, "POST", "/", token=api.token, json_body={})[0] == 405
    status, headers, _ = request(
        api.port,
        "OPTIONS",
        "/api/background",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = request(api.port, "OPTIONS", "/api/background", token=api.token)
    assert status == 405 and "access-control-allow-origin" not in headers
