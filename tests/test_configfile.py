"""The config file: strict keys and types, defaults < file < flags, and live reloading."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import write_clip
from mattecam import cli, configfile
from mattecam.config import Settings
from mattecam.configfile import ConfigWatcher, LoadedConfig
from mattecam.errors import ConfigError, InputNotFoundError
from mattecam.specs import BackgroundSpec, OutputSpec
from test_control import FPS, live_settings, max_gap, near, private_xdg, running, wait_for


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_xdg(tmp_path, monkeypatch)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert configfile.default_path() == tmp_path / "mattecam" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert configfile.default_path() == tmp_path / "home" / ".config" / "mattecam" / "config.toml"


def test_values_are_typed_like_the_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'outputs = ["/dev/video10", "null"]\nbackground = "blur"\nblur_strength = 30\n'
        "mirror = true\nwidth = 1280\nfps = 30\ncontrol = true\ncontrol_port = 9000\n",
    )
    values = configfile.read(path)
    assert values == {
        "outputs": (OutputSpec("camera", "/dev/video10"), OutputSpec("null")),
        "background": BackgroundSpec("blur"),
        "blur_strength": 30.0,
        "mirror": True,
        "width": 1280,
        "fps": 30.0,
        "control": True,
        "control_port": 9000,
    }
    assert isinstance(values["blur_strength"], float)
    s = configfile.merge(values, {})
    assert tuple(map(str, s.outputs)) == ("/dev/video10", "null") and s.control_port == 9000


def test_every_option_has_a_key() -> None:
    """Everything the command line can say, the file can say: each run option's destination
    is a config key, and every config key is reachable from the command line."""
    parser = cli.build_parser()
    dests = {a.dest for a in parser._actions} - {"help", "version", "verbose", "config"}
    assert dests == set(configfile.KEYS)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("blur = 3", "unknown key 'blur'; did you mean 'blur_strength'?"),
        ("camera-format = 'mjpeg'", "unknown key 'camera-format'; did you mean 'camera_format'?"),
        ("colour = 'red'", "unknown key 'colour'"),
        ("[control]\nport = 1", "control must be true or false"),
        ("mirror = 'yes'", "mirror must be true or false"),
        ("width = 1280.5", "width must be a whole number"),
        ("threads = true", "threads must be a whole number"),
        ("blur_strength = '12'", "blur_strength must be a number"),
        ("outputs = 'auto'", 'outputs must be a list of strings, like ["auto"]'),
        ("outputs = [1]", "outputs must be a list of strings"),
        ("background = ", "is not valid TOML"),
        ("mirror = true\nmirror = false", "is not valid TOML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as e:
        configfile.read(path)
    assert fragment in str(e.value)
    assert str(path) in str(e.value)


def test_out_of_range_values_fail_validation(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'outputs = ["null"]\nblur_strength = 500\n')
    with pytest.raises(ConfigError, match=r"c\.toml: blur_strength must be between 0 and 100"):
        configfile.load({}, path)  # named as the file names it
    with pytest.raises(ConfigError, match=r"^--blur must be between 0 and 100, got 300"):
        configfile.load({"blur_strength": 300.0}, path)  # named as the flag that gave it


def test_flags_win_over_the_file_which_wins_over_defaults(xdg: Path) -> None:
    write(
        configfile.default_path(),
        'outputs = ["out.mp4"]\nbackground = "blur"\nmirror = true\nblur_strength = 30\n'
        "temporal = false\n",
    )
    loaded = configfile.load(cli.explicit_settings(["--blur", "5", "--no-mirror"]))
    s = loaded.settings
    assert s.blur_strength == 5 and s.mirror is False  # flags
    assert str(s.background) == "blur" and s.outputs == (OutputSpec("file", "out.mp4"),)
    assert s.temporal is False  # from the file
    assert s.model == "landscape" and s.fps is None  # defaults
    s = configfile.load(cli.explicit_settings(["-o", "null", "--temporal"])).settings
    assert s.outputs == (OutputSpec("null"),) and s.temporal is True  # -o replaces the file's
    assert cli.explicit_settings([]) == {}


def test_missing_files(xdg: Path, tmp_path: Path) -> None:
    # No default file: defaults and flags only.
    assert configfile.load({"outputs": ("null",)}).settings.outputs == (OutputSpec("null"),)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        configfile.load({"outputs": ("null",)}, tmp_path / "nope.toml")


def test_command_line_reports_config_errors(xdg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(configfile.default_path(), "blurr = 3\n")
    assert cli.main(["-o", "null"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'blurr'" in err and "config.toml" in err


# --- the watcher, one poll at a time ------------------------------------------------------


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[dict[str, object]] = []
        self.fail = fail

    def __call__(self, changes: dict[str, object]) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(changes)


def watcher_for(
    path: Path, cli_values: dict[str, object], apply: Recorder
) -> tuple[ConfigWatcher, list[str | None]]:
    loaded = configfile.load(cli_values, path)
    errors: list[str | None] = []
    return ConfigWatcher(loaded, apply, on_error=errors.append), errors


def settle(w: ConfigWatcher) -> bool:
    """Two looks: the first sees the change, the second finds it stable and applies it."""
    first = w.poll()
    return w.poll() or first


def test_edits_apply_only_what_changed_and_flags_still_win(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'outputs = ["null"]\nbackground = "green"\nmirror = true\n')
    rec = Recorder()
    w, _ = watcher_for(path, {"mirror": False}, rec)
    assert not w.poll()  # nothing changed yet
    write(path, 'outputs = ["null"]\nbackground = "blur"\nblur_strength = 40\nmirror = false\n')
    assert not w.poll()  # seen once: maybe half-written, wait for it to settle
    assert w.poll()
    assert rec.calls == [{"background": BackgroundSpec("blur"), "blur_strength": 40.0}]  # no mirror
    assert not settle(w)  # no new edit, nothing applied again
    assert w.reloads == 1


def test_bad_edits_keep_the_running_settings_and_report(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'outputs = ["null"]\nbackground = "green"\n')
    rec = Recorder()
    w, errors = watcher_for(path, {}, rec)
    for bad, fragment in (
        ('background = "blur', "not valid TOML"),
        ('outputs = ["null"]\nbackgroud = "blur"', "unknown key 'backgroud'"),
        ('outputs = ["null"]\nblur_strength = -1', "blur_strength must be between"),
        ("background = 'blur'", "no output"),  # valid TOML, invalid settings
    ):
        write(path, bad)
        assert not settle(w)
        assert w.error is not None and fragment in w.error, w.error
        assert str(path) in w.error
        assert errors[-1] == w.error
    assert rec.calls == []
    write(path, 'outputs = ["null"]\nbackground = "red"\n')
    assert settle(w)
    assert rec.calls == [{"background": BackgroundSpec.of_color((0, 0, 255))}]
    assert w.error is None and errors[-1] is None


def test_a_change_that_cannot_be_built_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'outputs = ["null"]\n')
    w, _ = watcher_for(path, {}, Recorder(fail=InputNotFoundError("background image x.jpg")))
    write(path, 'outputs = ["null"]\nbackground = "x.jpg"\n')
    assert not settle(w)
    assert w.error is not None and "x.jpg" in w.error and "could not apply" in w.error


def test_removed_and_created_files(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    rec = Recorder()
    w, _ = watcher_for(write(path, 'outputs = ["null"]\nmirror = true\n'), {}, rec)
    path.unlink()
    assert not settle(w)  # keeps the running settings
    assert rec.calls == [] and w.error is None
    write(path, 'outputs = ["null"]\nmirror = false\n')
    assert settle(w)
    assert rec.calls == [{"mirror": False}]
    # A file created after the start (none at first) is picked up too.
    later = tmp_path / "later.toml"
    loaded = LoadedConfig(later, {"outputs": ("null",)}, {}, Settings(outputs=("null",)))
    rec2 = Recorder()
    w2 = ConfigWatcher(loaded, rec2)
    write(later, "light_wrap = 0.5\n")
    assert settle(w2)
    assert rec2.calls == [{"light_wrap": 0.5}]


def test_watcher_thread_is_named_and_stops(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'outputs = ["null"]\n')
    rec = Recorder()
    loaded = configfile.load({}, path)
    with ConfigWatcher(loaded, rec, interval=0.02) as w:
        assert "config-watch" in {t.name for t in threading.enumerate()}
        write(path, 'outputs = ["null"]\nmirror = true\n')
        wait_for(lambda: rec.calls, timeout=5)
    w.close()  # idempotent
    assert "config-watch" not in {t.name for t in threading.enumerate()}
    assert rec.calls == [{"mirror": True}]


# --- live, end to end ----------------------------------------------------------------------


def test_config_edit_applies_live_without_interrupting_output(
    xdg: Path, tmp_path: Path, landscape_model: Path
) -> None:
    """Edit the file while frames flow: the background and mirror change, a bad edit is
    reported and changes nothing, a restart-only key is reported as such, and the output
    never pauses for more than two frame intervals."""
    clip = write_clip(tmp_path / "clip.mp4", n=20, fps=FPS)
    path = write(configfile.default_path(), 'background = "green"\n')
    settings = live_settings(clip, background="green")
    flags = {
        k: getattr(settings, k)
        for k in (
            "input",
            "outputs",
            "loop",
            "fps",
            "refine",
            "temporal",
            "control",
            "control_port",
        )
    }
    loaded = configfile.load(flags)
    assert loaded.path == path
    with running(loaded.settings, config=loaded) as (session, sink):
        assert session.watcher is not None
        session.watcher._interval = 0.05  # look often, to keep the test short
        start = time.monotonic()
        time.sleep(0.3)
        before = sink.frames_written
        write(path, 'background = "#0000ff"\nmirror = true\n')
        wait_for(lambda: near(sink.corners[-1], (255, 0, 0)), what="blue output")
        first_blue = next(i for i, c in enumerate(sink.corners) if near(c, (255, 0, 0)))
        assert before <= first_blue
        assert session.controller.settings.mirror is True
        write(path, 'background = "#0000ff"\nmirror = true\nblur_strength = 900\n')
        wait_for(lambda: session.controller.config_error is not None, what="error reported")
        assert "blur_strength must be between 0 and 100" in str(session.controller.config_error)
        assert session.controller.settings.blur_strength == 12.0
        write(path, 'background = "#0000ff"\nmirror = true\nwidth = 320\n')
        wait_for(lambda: session.controller.restart_needed, what="restart reported")
        assert session.controller.restart_needed == {"width": 320}
        assert session.controller.config_error is None
        time.sleep(0.3)
        assert sink.frames_written > first_blue + 5
        assert near(sink.corners[-1], (255, 0, 0))
        assert max_gap(sink.times, start) < 3 / FPS  # no stall (see test_control.py)


def test_help_explains_the_live_control_options() -> None:
    text = cli.build_parser().format_help()
    wanted = [
        "--config",
        "--control",
        "--control-port",
        "--no-mirror",
        "--no-temporal",
        "config.toml",
        "mattecam ctl",
        "mattecam doctor",
        "mattecam install-service",
    ]
    for opt in wanted:
        assert opt in text, opt
