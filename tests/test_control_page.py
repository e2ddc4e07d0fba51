"""The control page in a real headless Chromium: load it, switch the background, see the
preview change, upload a picture; a screenshot is kept under artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from test_control import live_settings, near, png, private_xdg, running, write_clip

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
ARTIFACTS = ROOT / "artifacts"

# The bottom-right pixel of the preview as the page shows it, read back through a canvas.
CORNER_JS = """() => {
  const img = document.getElementById("preview");
  if (!img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(c.width - 4, c.height - 4, 1, 1).data;
  return [d[2], d[1], d[0]];
}"""


def corner_is(page: Any, bgr: tuple[int, int, int], timeout_ms: int = 10_000) -> None:
    """Wait until the preview's corner pixel shows ``bgr`` (within JPEG tolerance)."""
    page.wait_for_function(
        f"""() => {{
            const px = ({CORNER_JS})();
            const want = {list(bgr)};
            return px !== null && px.every((v, i) => Math.abs(v - want[i]) <= 40);
        }}""",
        timeout=timeout_ms,
    )


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (bash scripts/setup.sh --dev installs it)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1100, "height": 760},
        )
        try:
            yield context
        finally:
            context.close()


def test_page_switches_background_and_preview_follows(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landscape_model: Path
) -> None:
    private_xdg(tmp_path, monkeypatch)
    clip = write_clip(tmp_path / "clip.mp4", n=20, fps=20)
    picture = tmp_path / "blue.png"
    picture.write_bytes(png((255, 0, 0), size=(320, 180)))
    with running(live_settings(clip)) as (session, sink):
        assert session.control_url is not None
        page = browser.new_page()
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(session.control_url)
        page.wait_for_selector("#app", state="visible", timeout=10_000)
        assert "token=" not in page.url  # taken out of the address bar
        page.wait_for_function(
            "() => Number(document.getElementById('preview').dataset.frames) > 1",
            timeout=10_000,
        )
        corner_is(page, (0, 255, 0))  # green, as started
        assert page.get_attribute("button[data-kind=color]", "aria-checked") == "true"

        # Switch to a colour: the preview turns red.
        page.click("button[data-kind=color]")
        page.fill("#color", "#ff0000")
        corner_is(page, (0, 0, 255))
        assert str(session.controller.settings.background) == "#ff0000"
        assert near(sink.corners[-1], (0, 0, 255))

        # Blur, with a strength from the slider.
        page.click("button[data-kind=blur]")
        page.wait_for_function("() => document.body.dataset.kind === 'blur'")
        page.fill("#blur", "40")
        page.wait_for_function("() => document.getElementById('blur-value').textContent === '40'")
        for _ in range(100):
            if session.controller.settings.blur_strength == 40:
                break
            page.wait_for_timeout(50)
        assert str(session.controller.settings.background) == "blur"
        assert session.controller.settings.blur_strength == 40

        # Upload a picture: it becomes the background and appears in the library.
        page.click("button[data-kind=image]")
        page.set_input_files("#upload", str(picture))
        corner_is(page, (255, 0, 0))
        page.wait_for_function(  # the library shows the upload's thumbnail
            "() => { const i = document.querySelector('#images button img');"
            " return i !== null && i.complete && i.naturalWidth === 160; }",
            timeout=10_000,
        )
        assert page.get_attribute("#images button", "aria-checked") == "true"

        # The status line shows live numbers.
        page.wait_for_function(
            "() => /fps/.test(document.getElementById('status').textContent)", timeout=5000
        )
        status_text = page.inner_text("#status")
        assert "watching" in status_text and "not connected" not in status_text

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "control-page.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\ncontrol page screenshot: {shot}")
        assert shot.stat().st_size > 10_000
        assert not page.is_visible("#message") or not page.inner_text("#message")
        assert console_errors == []


def test_page_without_token_explains_what_to_do(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landscape_model: Path
) -> None:
    private_xdg(tmp_path, monkeypatch)
    clip = write_clip(tmp_path / "clip.mp4", n=10, fps=20)
    with running(live_settings(clip)) as (session, _):
        assert session.server is not None
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{session.server.port}/")
        page.wait_for_selector("#message", state="visible", timeout=10_000)
        assert "mattecam ctl url" in page.inner_text("#message")
        assert page.is_hidden("#app")
