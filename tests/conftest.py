"""Shared fixtures: data paths, the real model, and synthetic clips made in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's model cache (fetched once through the real code path if empty)."""
    from mattecam.segmentation import models

    models.fetch()
    return models.cache_dir()


@pytest.fixture(scope="session")
def landscape_model(model_cache: Path) -> Path:
    from mattecam.segmentation import models

    return models.cached_path(models.MODELS["landscape"])


@pytest.fixture(scope="session")
def general_model(model_cache: Path) -> Path:
    from mattecam.segmentation import models

    return models.cached_path(models.MODELS["general"])


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
