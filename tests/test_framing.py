"""Framing: the model runs on a crop around the person, and the matte comes back whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from fakes import FakeSegmenter as BrightSegmenter
from mattecam.matte import BilinearRefiner, TemporalRefiner, make_refiner
from mattecam.matte.framing import Framing, remap_matrix
from mattecam.matte.stage import MatteStage

W, H = 1280, 720


def scene(*people: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """A dark 720p frame with bright rectangles ``(x, y, w, h)``."""
    frame = np.full((H, W, 3), 30, np.uint8)
    for x, y, w, h in people:
        frame[y : y + h, x : x + w] = 220
    return frame


def contains(rect: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> bool:
    rx, ry, rw, rh = rect
    x, y, w, h = box
    return rx <= x and ry <= y and x + w <= rx + rw and y + h <= ry + rh


def test_a_small_person_is_cropped_and_the_matte_is_whole() -> None:
    person = (600, 200, 100, 300)
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    timings: dict[str, float] = {}
    matte = matting.matte(scene(person), timings)
    # First frame: the whole frame to find them, then the crop.
    assert seg.calls == 2
    rect = matting.framing.rect
    assert rect is not None and contains(rect, person)
    assert rect[2] < W / 2 and rect[3] < H
    assert matte.shape == (H, W)
    x, y, w, h = person
    assert matte[y + 5 : y + h - 5, x + 5 : x + w - 5].min() == 255
    assert matte[:, : x - 10].max() == 0 and matte[:, x + w + 10 :].max() == 0
    assert {"preprocess", "inference", "refine"} <= timings.keys()
    # Next frames: one inference each, same crop.
    matting.matte(scene(person))
    assert seg.calls == 3 and matting.framing.rect == rect


def test_a_close_up_is_not_cropped() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    close_up = (200, 60, 900, 660)
    expected = make_refiner("bilinear", temporal=False).refine(
        seg.run(seg.preprocess(scene(close_up))), scene(close_up)
    )
    seg.calls = 0
    for _ in range(40):  # past a rescan interval: no extra passes on the whole frame
        matte = matting.matte(scene(close_up))
    assert seg.calls == 40
    assert matting.framing.rect == (0, 0, W, H)
    assert np.array_equal(matte, expected)


def test_disabled_framing_always_uses_the_whole_frame() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner(), framing=Framing(enabled=False))
    for _ in range(3):
        matting.matte(scene((600, 200, 100, 300)))
    assert seg.calls == 3 and matting.framing.rect is None


def test_the_crop_holds_for_small_moves_and_follows_big_ones() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    matting.matte(scene((600, 200, 100, 300)))
    rect = matting.framing.rect
    matting.matte(scene((606, 203, 100, 300)))
    assert matting.framing.rect == rect  # small move: no reframing
    moved = (900, 250, 100, 300)
    for _ in range(3):  # the person left the crop: found again within a couple of frames
        matte = matting.matte(scene(moved))
    new = matting.framing.rect
    assert new is not None and new != rect and contains(new, moved)
    assert matte[400, 950] == 255 and matte[400, 650] == 0


def test_a_person_at_the_frame_edge_with_a_jittery_mask_keeps_one_crop() -> None:
    """A seated person cut by the frame's bottom edge, whose head top and width wobble by a
    few pixels every frame (as a model's mask does), keeps one crop: no reframing, no
    reallocation, nothing for the smoothing to remap."""
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    rects = set()
    for i in range(40):
        j = (i * 7) % 5 * 4  # 0..16 px of wobble
        matting.matte(scene((420 + j // 2, 40 + j, 400 - j, 680 - j)))
        rects.add(matting.framing.rect)
    assert len(rects) == 1
    (rect,) = rects
    assert rect is not None and rect[2] < W and rect[3] == H


def test_the_crop_follows_a_walking_person_by_shifting() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    sizes, changes, last = set(), 0, None
    for i in range(40):
        matting.matte(scene((200 + 12 * i, 200, 100, 300)))
        rect = matting.framing.rect
        assert rect is not None
        sizes.add(rect[2:])
        changes += rect != last
        last = rect
    assert len(sizes) == 1  # same size throughout: moved, not remade
    assert changes < 20  # the slack means it does not move on every frame
    assert contains(last, (200 + 12 * 39, 200, 100, 300))


def test_someone_stepping_in_is_found_by_the_rescan() -> None:
    framing = Framing(rescan_every=10)
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner(), framing=framing)
    a, b = (300, 200, 100, 300), (1000, 150, 100, 300)
    for _ in range(3):
        matting.matte(scene(a))
    assert framing.rect is not None and not contains(framing.rect, b)
    for _ in range(12):
        matte = matting.matte(scene(a, b))
    assert framing.rect is not None and contains(framing.rect, a) and contains(framing.rect, b)
    assert matte[300, 1050] == 255 and matte[300, 350] == 255


def test_nobody_means_the_whole_frame() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    matting.matte(scene((600, 200, 100, 300)))
    matting.matte(scene())  # they left
    assert matting.framing.rect == (0, 0, W, H)
    matte = matting.matte(scene())
    assert matte.max() == 0


def test_remap_matrix_maps_the_same_frame_point() -> None:
    old, new, size = (100, 50, 512, 288), (300, 100, 256, 288), (256, 144)
    m = remap_matrix(old, new, size)
    assert np.allclose(remap_matrix(old, old, size), [[1, 0, 0], [0, 1, 0]])
    for u, v in [(0.0, 0.0), (127.5, 71.5), (255.0, 143.0)]:
        # model pixel centre -> frame point, through each crop
        fx = old[0] + (u + 0.5) * old[2] / size[0]
        fy = old[1] + (v + 0.5) * old[3] / size[1]
        un, vn = m @ np.array([u, v, 1.0])
        assert new[0] + (un + 0.5) * new[2] / size[0] == pytest.approx(fx)
        assert new[1] + (vn + 0.5) * new[3] / size[1] == pytest.approx(fy)


def test_temporal_state_follows_the_crop() -> None:
    """After a reframe, a still scene stays smoothed (no jump back to the raw mask): the
    previous mask was carried into the new crop's coordinates."""
    t = TemporalRefiner(BilinearRefiner(), floor=0.05)
    frame = np.full((144, 256, 3), 100, np.uint8)
    full = np.zeros((144, 256), np.float32)
    full[40:100, 100:140] = 1.0
    t.refine(full, frame, frame)
    # The crop moves right by 64 model pixels; the same person appears 64 pixels left.
    t.reframe(remap_matrix((0, 0, 256, 144), (64, 0, 256, 144), (256, 144)))
    shifted = np.zeros_like(full)
    shifted[40:100, 36:76] = 1.0
    noisy = shifted.copy()
    noisy[60, 50] = 0.5  # one pixel of model noise (below the change gate)
    out = t.refine(noisy, frame, frame)
    assert out[60, 50] > 240  # smoothed: 1.0 carried over, 5% of the noise let in
    assert out[70, 20] == 0 and out[70, 60] == 255


def run_eval(*args: str) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, "-m", "mattecam", "eval", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(r.stdout))


def test_cropping_helps_a_distant_person(shared_data: Path, model_cache: Path) -> None:
    """On a clip where the person fills a fifth of the frame, the crop scores better than
    the whole frame squeezed into the model (measured +0.08 IoU on all 70 frames)."""
    clip = str(shared_data / "videos" / "gt" / "tennis")
    whole = run_eval("--clip", clip, "--limit", "20", "--no-crop")
    cropped = run_eval("--clip", clip, "--limit", "20")
    assert cropped["crop"] is True and whole["crop"] is False
    assert cropped["iou"] > whole["iou"] + 0.03
    assert cropped["boundary_f"] > whole["boundary_f"]


def test_frames_of_another_size_reset_the_crop() -> None:
    seg = BrightSegmenter()
    matting = MatteStage(seg, BilinearRefiner())
    matting.matte(scene((600, 200, 100, 300)))
    small = np.asarray(cv2.resize(scene((600, 200, 100, 300)), (640, 360)), np.uint8)
    matte = matting.matte(small)
    assert matte.shape == (360, 640)
    assert matte[175, 325] == 255
