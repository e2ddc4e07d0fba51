"""``mattecam eval`` on real labelled data, and its input checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

MATTECAM = [sys.executable, "-m", "mattecam"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MATTECAM, "eval", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_eval_manifest_json(shared_data: Path, model_cache: Path) -> None:
    manifest = shared_data / "portraits" / "manifest.csv"
    r = run(
        "--manifest",
        str(manifest),
        "--set",
        "eg1800_train",
        "--limit",
        "8",
        "--model",
        "general",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["n"] == 8
    assert result["iou"] > 0.85
    assert 0 < result["boundary_f"] <= 1
    assert 0 <= result["mae"] < 0.1
    assert result["ms_per_frame"] > 0
    assert "flicker" not in result


def test_eval_clip_has_flicker(shared_data: Path, model_cache: Path) -> None:
    clip = shared_data / "videos" / "gt" / "tennis"
    r = run("--clip", str(clip), "--limit", "10", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["n"] == 10
    assert result["flicker"] is not None and 0 <= result["flicker"] < 0.1
    assert result["temporal"] is True


def test_refinement_beats_raw_on_portraits(shared_data: Path, model_cache: Path) -> None:
    """A quality regression guard: the default refinement must stay ahead of the plain
    bilinear enlargement of the model's mask in both IoU and boundary F."""
    manifest = shared_data / "portraits" / "manifest.csv"
    common = [
        "--manifest",
        str(manifest),
        "--set",
        "eg1800_train",
        "--limit",
        "60",
        "--model",
        "general",
        "--json",
    ]
    raw = json.loads(run(*common, "--refine", "bilinear", "--no-temporal", "--no-crop").stdout)
    refined = json.loads(run(*common).stdout)
    assert refined["iou"] > raw["iou"]
    assert refined["boundary_f"] > raw["boundary_f"]


def test_eval_on_a_constructed_manifest(tmp_path: Path, model_cache: Path) -> None:
    """An empty scene labelled as all background scores IoU 1 (both empty) and low MAE."""
    img = np.full((120, 160, 3), (170, 180, 190), np.uint8)
    cv2.imwrite(str(tmp_path / "wall.png"), img)
    cv2.imwrite(str(tmp_path / "wall_mask.png"), np.zeros((120, 160), np.uint8))
    (tmp_path / "m.csv").write_text("name,image,mask\nwall,wall.png,wall_mask.png\n")
    r = run("--manifest", str(tmp_path / "m.csv"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["n"] == 1
    assert result["iou"] == 1.0
    assert result["mae"] < 0.05


def test_eval_bad_inputs(tmp_path: Path) -> None:
    r = run("--manifest", str(tmp_path / "none.csv"))
    assert r.returncode != 0 and "does not exist" in r.stderr
    (tmp_path / "bad.csv").write_text("name,picture\nx,y.png\n")
    r = run("--manifest", str(tmp_path / "bad.csv"))
    assert r.returncode != 0 and "image, mask" in r.stderr
    r = run("--clip", str(tmp_path))
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("strength", [0.0, 0.6])
def test_light_wrap(strength: float) -> None:
    from mattecam.compositing.blend import light_wrap
    from mattecam.imaging.yuv import I420

    out_bgr = np.full((240, 320, 3), 100, np.uint8)
    bg = I420.from_bgr(np.full((240, 320, 3), (0, 0, 250), np.uint8))
    matte = np.zeros((240, 320), np.uint8)
    matte[40:200, 100:220] = 255
    out_bgr[matte > 0] = (90, 90, 90)
    out = I420.from_bgr(out_bgr)
    before_pic = out.copy()
    light_wrap(out, bg, matte, strength)
    before, after = before_pic.to_bgr(), out.to_bgr()
    rim, core = after[120, 101], after[120, 160]
    if strength == 0:
        assert np.array_equal(out.data, before_pic.data)
    else:
        assert rim[2] > before[120, 101, 2] + 20  # red light on the person's edge
        assert abs(int(core[2]) - 90) <= 3  # the middle of the person is untouched
