"""The test session is hermetic: mattecam, in this process and in every subprocess, finds its
config, data, runtime files and models in the session's directories, never the user's."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SESSION_DIRS, Hermetic
from mattecam.segmentation import models

#: Every path mattecam derives from the environment, printed by a fresh interpreter.
PATHS_SCRIPT = """
import json
from pathlib import Path
from mattecam import configfile, service
from mattecam.control import paths
from mattecam.segmentation import models
print(json.dumps({
    "home": str(Path.home()),
    "config": str(configfile.default_path()),
    "data": str(paths.data_dir()),
    "runtime": str(paths.runtime_dir()),
    "unit": str(service.unit_path()),
    "models": str(models.cache_dir()),
}))
"""


def user_dirs(hermetic: Hermetic) -> list[Path]:
    """Where the user's own config, caches and data live."""
    home = hermetic.real_home
    return [home / ".config", home / ".cache", home / ".local", hermetic.real_models]


def test_environment_points_into_the_session(hermetic: Hermetic) -> None:
    for name, sub in SESSION_DIRS.items():
        assert os.environ[name] == str(hermetic.root / sub), name
        assert (hermetic.root / sub).is_dir(), name
    assert Path.home() == hermetic.root / "home"
    assert os.environ["MATTECAM_CACHE_DIR"] == str(hermetic.models)
    assert models.cache_dir() == hermetic.models
    # The session's models are in the checkout's pytest cache (a qemu guest sees it; see
    # conftest), or if the checkout is read-only, in the session directory.
    assert hermetic.models.is_relative_to(ROOT / ".pytest_cache") or (
        hermetic.models.is_relative_to(hermetic.root)
    )
    for path in [hermetic.root, hermetic.models]:
        for mine in user_dirs(hermetic):
            assert not path.is_relative_to(mine), (path, mine)


def test_subprocesses_resolve_every_path_in_the_session(hermetic: Hermetic) -> None:
    """What ``python -m mattecam`` would read (the config file) or write (control page files,
    uploads, the service unit, models) is in the session's directories."""
    r = subprocess.run(
        [sys.executable, "-c", PATHS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = {k: Path(v) for k, v in json.loads(r.stdout).items()}
    assert got["home"] == hermetic.root / "home"
    assert got["config"] == hermetic.root / "config" / "mattecam" / "config.toml"
    assert got["data"] == hermetic.root / "data" / "mattecam"
    assert got["runtime"] == hermetic.root / "runtime" / "mattecam"
    assert got["unit"].is_relative_to(hermetic.root / "config")
    assert got["models"] == hermetic.models


def test_mattecam_models_reports_the_session_cache(model_cache: Path, hermetic: Hermetic) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mattecam", "models", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"cache: {hermetic.models}"
    assert r.stdout.count("ok (sha256 verified)") == len(models.MODELS)


def test_session_models_are_verified_copies(model_cache: Path, hermetic: Hermetic) -> None:
    """Copies, not links: a test that damaged one could not damage the user's file."""
    for info in models.MODELS.values():
        path = model_cache / info.filename
        assert models.verify(info, path)
        assert not path.is_symlink()
        user_file = hermetic.real_models / info.filename
        if user_file.exists():
            assert not path.samefile(user_file)


@pytest.mark.vm
def test_vm_guest_reads_the_session_model_cache(model_cache: Path) -> None:
    """The VM tests hand ``$MATTECAM_CACHE_DIR`` to the guest, which sees the host's files
    except /tmp: the session's models must be readable there, as tests/vm expects."""
    vm_dir = str(ROOT / "tests" / "vm")
    if vm_dir not in sys.path:
        sys.path.insert(0, vm_dir)
    import harness

    reason = harness.vm_available()
    if reason:
        pytest.skip(reason)
    res = harness.run_in_vm(
        f"exec {shlex.quote(harness.guest_python())} -m mattecam models verify",
        loopback=None,
        cwd=ROOT,
        env={"MATTECAM_CACHE_DIR": str(models.cache_dir())},
        timeout=300,
    )
    assert res.returncode == 0, res.report()
    assert f"cache: {model_cache}" in res.output
    assert res.output.count("ok (sha256 verified)") == len(models.MODELS), res.report()
