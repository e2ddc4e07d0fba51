"""Shared fixtures: a hermetic session environment, data paths, the real models, and
synthetic clips made in tmp_path."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@dataclass(frozen=True)
class Hermetic:
    """Where this test session keeps what mattecam would otherwise read or write in the
    user's home, and where the user's own files are (read, never written)."""

    root: Path
    """The session directory holding HOME and the XDG directories (see ``SESSION_DIRS``)."""
    models: Path
    """``$MATTECAM_CACHE_DIR``: the session's model cache, holding verified models."""
    real_home: Path
    """The user's home as it was before the session changed ``$HOME``."""
    real_models: Path
    """The user's model cache as it resolved before the change (its files are copied)."""


#: Each variable mattecam (configfile, control/paths, segmentation/models, service) reads to
#: find the user's files, and its directory under ``Hermetic.root``.
SESSION_DIRS = {
    "HOME": "home",
    "XDG_CONFIG_HOME": "config",
    "XDG_CACHE_HOME": "cache",
    "XDG_DATA_HOME": "data",
    "XDG_STATE_HOME": "state",
    "XDG_RUNTIME_DIR": "runtime",
}


@pytest.fixture(scope="session", autouse=True)
def hermetic(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Hermetic]:
    """Point HOME, the XDG directories and the model cache at session directories, for this
    process and every ``python -m mattecam`` it starts: no test reads the user's config file
    (it would change what a test runs) or writes into the user's home or cache."""
    from mattecam.segmentation import models

    # Resolved before anything changes, so the user's own MATTECAM_CACHE_DIR, XDG_CACHE_HOME
    # and pip config count.
    real_home = Path.home()
    real_models = models.cache_dir()
    pip_config = _user_pip_config(real_home)
    root = tmp_path_factory.mktemp("env", numbered=False)
    mp = pytest.MonkeyPatch()
    try:
        for name, sub in SESSION_DIRS.items():
            (root / sub).mkdir(mode=0o700)
            mp.setenv(name, str(root / sub))
        session_models = _session_model_dir(pytestconfig, root)
        mp.setenv("MATTECAM_CACHE_DIR", str(session_models))
        # Not the user's state, so passed on: the VM image tests/vm/build.sh made (the
        # harness looks for it under $HOME), and how pip reaches PyPI (a mirror, a proxy's
        # certificate) for the models fetch.
        if not os.environ.get("MATTECAM_VM_CACHE"):
            mp.setenv("MATTECAM_VM_CACHE", str(real_home / ".cache" / "mattecam-vm"))
        if pip_config is not None and "PIP_CONFIG_FILE" not in os.environ:
            mp.setenv("PIP_CONFIG_FILE", str(pip_config))
        _stock_models(real_models)
        yield Hermetic(root, session_models, real_home, real_models)
    finally:
        mp.undo()


def _session_model_dir(config: pytest.Config, root: Path) -> Path:
    """``mattecam-models`` in the checkout's pytest cache (``.pytest_cache/d/``, there even
    with ``-p no:cacheprovider``), else, if the checkout is read-only, under ``root``.

    Not under /tmp: the VM tests hand ``$MATTECAM_CACHE_DIR`` to a qemu guest that sees the
    host's files but an empty /tmp, and the checkout is always visible there. Kept between
    runs (git-ignored), so a user without models downloads them once, not every session;
    ``_stock_models`` checks every file's sha256 each session.
    """
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    with contextlib.suppress(OSError):
        if cache is not None:
            path: Path = cache.mkdir("mattecam-models")
        else:
            path = config.rootpath / ".pytest_cache" / "d" / "mattecam-models"
            path.mkdir(parents=True, exist_ok=True)
        return path
    path = root / "cache" / "mattecam" / "models"
    path.mkdir(parents=True)
    return path


def _user_pip_config(home: Path) -> Path | None:
    """The user's pip config file (pip's user location), if there is one."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    for path in (base / "pip" / "pip.conf", home / ".pip" / "pip.conf"):
        if path.is_file():
            return path
    return None


def _stock_models(source: Path) -> None:
    """Fill the session's model cache (``$MATTECAM_CACHE_DIR``) with verified models: copies
    of the files in ``source`` (the user's cache) that pass ``models.verify``, and what is
    still missing fetched like ``mattecam models fetch`` does. A failed fetch is left to the
    ``model_cache`` fixture to report, so tests that need no model still run offline."""
    from mattecam.errors import ModelError
    from mattecam.segmentation import models

    target = models.cache_dir()
    for info in models.MODELS.values():
        dest = target / info.filename
        src = source / info.filename
        with contextlib.suppress(OSError):
            if models.verify(info, dest) or not models.verify(info, src):
                continue
            # A copy, not a link: nothing a test does to it can reach the user's file. Written
            # beside it and renamed, as models.fetch does, for a session running alongside.
            fd, name = tempfile.mkstemp(dir=target, prefix=".part-")
            os.close(fd)
            part = Path(name)
            try:
                shutil.copyfile(src, part)
                part.replace(dest)
            finally:
                part.unlink(missing_ok=True)
    with contextlib.suppress(ModelError):
        models.fetch()  # downloads only when a model is still missing or corrupt


@pytest.fixture(scope="session")
def model_cache(hermetic: Hermetic) -> Path:
    """The session's model cache, with both models verified (fetched if they could not be
    copied from the user's cache; a ``ModelError`` says how to fix it when that fails)."""
    from mattecam.segmentation import models

    models.fetch()  # checks both sha256 sums; downloads only what is missing
    assert models.cache_dir() == hermetic.models
    return hermetic.models


@pytest.fixture(scope="session")
def landscape_model(model_cache: Path) -> Path:
    from mattecam.segmentation import models

    return model_cache / models.MODELS["landscape"].filename


@pytest.fixture(scope="session")
def general_model(model_cache: Path) -> Path:
    from mattecam.segmentation import models

    return model_cache / models.MODELS["general"].filename


def write_clip(
    path: Path,
    n: int = 12,
    size: tuple[int, int] = (160, 96),
    fps: float = 24.0,
    draw: Callable[[int, np.ndarray], None] | None = None,
) -> Path:
    """Write an H.264 clip whose frame i has a bright square at x = 4*i on grey, and the
    frame number encoded in the top-left 8x8 block's value (i * 40 mod 256)."""
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "qp": "0"}
        for i in range(n):
            img = np.full((h, w, 3), 90, np.uint8)
            x = (4 * i) % max(1, w - 20)
            img[h // 3 : h // 3 + 20, x : x + 20] = (40, 200, 230)
            img[:8, :8] = (i * 40) % 256
            if draw:
                draw(i, img)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 12-frame 160x96 clip at 24 fps."""
    return write_clip(tmp_path / "clip.mp4")


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as BGR arrays."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
