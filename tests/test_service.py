"""``mattecam install-service``: the systemd user unit, its quoting, and the command."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mattecam import service
from mattecam.errors import ConfigError


def unquote(exec_start: str) -> list[str]:
    """Read an ExecStart= line back the way systemd does for the forms quote() writes."""
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(exec_start)]


@pytest.mark.parametrize(
    "arg",
    [
        "plain",
        "my background.jpg",
        'say "hi"',
        "back\\slash",
        "100%",
        "$HOME",
        "a;b",
        "",
        "it's",
        "tab\there",
    ],
)
def test_quote_round_trips(arg: str) -> None:
    quoted = service.quote(arg)
    assert unquote(quoted) == [arg]
    assert "%" not in quoted.replace("%%", "")  # no specifier left for systemd to expand
    assert "$" not in quoted.replace("$$", "")


def test_quote_refuses_line_breaks() -> None:
    with pytest.raises(ConfigError, match="line break"):
        service.quote("a\nb")


def test_unit_text() -> None:
    text = service.unit_text(["-o", "/dev/video10", "-b", "my bg.jpg"], python="/opt/py")
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert unquote(exec_line.removeprefix("ExecStart=")) == [
        "/opt/py",
        "-m",
        "mattecam",
        "-o",
        "/dev/video10",
        "-b",
        "my bg.jpg",
    ]
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    assert "SuccessExitStatus=129 130 143" in text  # a clean stop by signal is no failure


def test_install_writes_the_user_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path, text = service.install(["-o", "auto"], dry_run=True)
    assert path == tmp_path / "systemd" / "user" / "mattecam.service"
    assert not path.exists()
    path, text = service.install(["-o", "auto"])
    assert path.read_text() == text
    assert sys.executable in text
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, with a private config dir and a PATH whose systemctl only records
    that it was called (it must not be)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'systemctl-called'}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [sys.executable, "-m", "mattecam", "install-service", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_command_writes_unit_and_prints_how_to_enable(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "--", "-o", "/dev/video10", "-b", "blur", "--control")
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "mattecam.service"
    assert f"wrote {unit}" in r.stdout
    assert "systemctl --user enable --now mattecam" in r.stdout
    assert "-m mattecam -o /dev/video10 -b blur --control" in unit.read_text()
    assert not (tmp_path / "systemctl-called").exists()


def test_command_without_output_uses_the_first_virtual_camera(tmp_path: Path) -> None:
    r = run_cli(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "-o auto" in r.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "mattecam.service"
    assert "-m mattecam -o auto\n" in unit.read_text()
    # With outputs in the config file, nothing is added.
    config = tmp_path / "config" / "mattecam" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('outputs = ["/dev/video10"]\n')
    r = run_cli(tmp_path)
    assert r.returncode == 0, r.stderr
    assert unit.read_text().split("ExecStart=")[1].splitlines()[0].endswith("-m mattecam")


def test_dry_run_and_bad_options(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "--dry-run", "--", "-o", "null")
    assert r.returncode == 0 and "[Service]" in r.stdout and "not written" in r.stdout
    assert not (tmp_path / "config" / "systemd").exists()
    r = run_cli(tmp_path, "--", "-o", "null", "--blur", "500")
    assert r.returncode == 2 and "--blur must be between" in r.stderr
    r = run_cli(tmp_path, "--", "--no-such-option")
    assert r.returncode == 2
    assert not (tmp_path / "config" / "systemd").exists()
    assert not (tmp_path / "systemctl-called").exists()
