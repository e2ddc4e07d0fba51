"""The real MediaPipe models run by LiteRT, on real portraits with hand-made masks."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from mattecam.errors import UnsupportedFormatError
from mattecam.imaging import shrink
from mattecam.segmentation import LiteRTSegmenter


def portraits(shared: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    root = shared / "portraits"
    with (root / "manifest.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["set"] == "eg1800_train"][:n]
    out = []
    for r in rows:
        image = cv2.imread(str(root / r["image"]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(root / r["mask"]), cv2.IMREAD_GRAYSCALE)
        out.append((image, mask))
    return out


@pytest.mark.parametrize("model", ["landscape_model", "general_model"])
def test_model_finds_the_person(
    model: str, request: pytest.FixtureRequest, shared_data: Path
) -> None:
    seg = LiteRTSegmenter(request.getfixturevalue(model))
    w, h = seg.input_size
    ious = []
    for image, mask in portraits(shared_data, 12):
        alpha = seg.infer(image)
        assert alpha.shape == (h, w)
        assert alpha.dtype == np.float32
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0
        # A soft mask: there are values strictly between the extremes.
        assert np.count_nonzero((alpha > 0.05) & (alpha < 0.95)) > 0
        full = cv2.resize(alpha, (image.shape[1], image.shape[0])) >= 0.5
        gt = mask > 127
        ious.append((full & gt).sum() / (full | gt).sum())
    assert np.mean(ious) > 0.85


def test_empty_scene_is_background(landscape_model: Path) -> None:
    seg = LiteRTSegmenter(landscape_model)
    wall = np.full((360, 640, 3), (180, 190, 200), np.uint8)
    assert seg.infer(wall).mean() < 0.05


def test_input_sizes(landscape_model: Path, general_model: Path) -> None:
    assert LiteRTSegmenter(landscape_model).input_size == (256, 144)
    assert LiteRTSegmenter(general_model).input_size == (256, 256)


def test_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 100)
    with pytest.raises(UnsupportedFormatError, match="cannot load"):
        LiteRTSegmenter(bad)


def test_shrink_matches_area_resize() -> None:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8), (0, 0), 3)
    fast = shrink(image, 256, 144).astype(int)
    ref = cv2.resize(image, (256, 144), interpolation=cv2.INTER_AREA).astype(int)
    assert fast.shape == (144, 256, 3)
    assert np.abs(fast - ref).mean() < 2.0
