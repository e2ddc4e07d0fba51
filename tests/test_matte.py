"""Refinement from model resolution to the frame."""

from __future__ import annotations

import numpy as np
import pytest

from mattecam.errors import ConfigError
from mattecam.matte import BilinearRefiner, GuidedRefiner, TemporalRefiner, make_refiner


def test_bilinear_refine_keeps_soft_values_and_size() -> None:
    alpha = np.zeros((144, 256), np.float32)
    alpha[:, 128:] = 1.0
    alpha[:, 127] = 0.5
    frame = np.zeros((720, 1280, 3), np.uint8)
    matte = BilinearRefiner().refine(alpha, frame)
    assert matte.shape == (720, 1280)
    assert matte.dtype == np.uint8
    assert matte[:, :600].max() == 0
    assert matte[:, 660:].min() == 255
    soft = matte[360, 600:660]
    assert np.any((soft > 0) & (soft < 255))
    assert np.all(np.diff(soft.astype(int)) >= 0)  # monotonic ramp across the edge


def test_constant_alpha_maps_to_constant_matte() -> None:
    alpha = np.full((144, 256), 0.25, np.float32)
    matte = BilinearRefiner().refine(alpha, np.zeros((480, 854, 3), np.uint8))
    assert set(np.unique(matte)) == {64}


def step_frame(edge_x: int, h: int = 360, w: int = 640) -> np.ndarray:
    """Dark left of ``edge_x``, bright from it on."""
    frame = np.full((h, w, 3), 40, np.uint8)
    frame[:, edge_x:] = 220
    return frame


def test_guided_refiner_puts_the_edge_where_the_picture_has_it() -> None:
    """The model's edge is a ramp centred 4 px right of the frame's sharp edge at x=320. The
    guided matte jumps exactly at the picture's edge; the bilinear one barely moves there."""
    frame = step_frame(320)
    alpha = np.zeros((144, 256), np.float32)
    xs = np.arange(256, dtype=np.float32) * 640 / 256
    alpha[:] = np.clip((xs - 324) / 10 + 0.5, 0, 1)
    bil = BilinearRefiner().refine(alpha, frame)[180].astype(int)
    guided = GuidedRefiner().refine(alpha, frame)[180].astype(int)
    assert guided[:319].max() <= 12  # nothing of the person left of the real edge
    assert guided[320] - guided[319] >= 50  # a step at the real edge
    assert bil[320] - bil[319] <= 15  # the plain enlargement has no step there
    assert guided[340:].min() >= 250 and bil[340:].min() == 255


def test_guided_refiner_keeps_flat_regions_and_range() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    for value, expected in ((0.0, 0), (1.0, 255)):
        alpha = np.full((144, 256), value, np.float32)
        matte = GuidedRefiner().refine(alpha, frame)
        assert matte.shape == (200, 300) and matte.dtype == np.uint8
        assert np.abs(matte.astype(int) - expected).max() <= 2


def test_guided_refiner_handles_size_changes() -> None:
    r = GuidedRefiner(work_height=120)
    alpha = np.full((144, 256), 0.5, np.float32)
    for shape in ((360, 640, 3), (480, 854, 3), (360, 640, 3)):
        matte = r.refine(alpha, np.full(shape, 128, np.uint8))
        assert matte.shape == shape[:2]
        assert abs(int(matte.mean()) - 128) <= 2


def test_temporal_smoothing_removes_flicker_on_a_still_scene() -> None:
    rng = np.random.default_rng(1)
    frame = step_frame(320)
    base = np.zeros((144, 256), np.float32)
    base[:, 128:] = 1.0
    inner, smooth = BilinearRefiner(), TemporalRefiner(BilinearRefiner())
    raw_out, smooth_out = [], []
    for _ in range(20):
        noisy = np.clip(base + rng.normal(0, 0.1, base.shape).astype(np.float32), 0, 1)
        raw_out.append(inner.refine(noisy, frame).astype(float))
        smooth_out.append(smooth.refine(noisy, frame).astype(float))
    raw_flicker = np.abs(np.diff(np.stack(raw_out), axis=0)).mean()
    smooth_flicker = np.abs(np.diff(np.stack(smooth_out), axis=0)).mean()
    assert smooth_flicker < 0.5 * raw_flicker


def test_temporal_smoothing_follows_motion_at_once() -> None:
    """A bright person jumps from the left to the right half: the matte follows in the very
    first frame after the move, where a plain running average would lag."""
    h, w = 144, 256
    left = np.full((h, w, 3), 30, np.uint8)
    left[:, 20:100] = 230
    right = np.full((h, w, 3), 30, np.uint8)
    right[:, 150:230] = 230
    a_left = np.zeros((h, w), np.float32)
    a_left[:, 20:100] = 1
    a_right = np.zeros((h, w), np.float32)
    a_right[:, 150:230] = 1
    t = TemporalRefiner(BilinearRefiner())
    for _ in range(5):
        t.refine(a_left, left)
    moved = t.refine(a_right, right)
    assert moved[:, 160:220].min() >= 240  # the person is there now
    assert moved[:, 30:90].max() <= 15  # and gone from where they were
    t.reset()
    assert t.refine(a_left, left)[:, 30:90].min() == 255


def test_make_refiner() -> None:
    assert isinstance(make_refiner("bilinear", temporal=False), BilinearRefiner)
    r = make_refiner("guided")
    assert isinstance(r, TemporalRefiner) and isinstance(r.inner, GuidedRefiner)
    with pytest.raises(ConfigError, match="unknown refinement"):
        make_refiner("sharp")


def test_guided_applies_at_a_reduction_above_720p_pixels() -> None:
    """A 1080p frame applies the linear model at 960x540 and enlarges the matte: same size,
    and within a level or two of the full-resolution result; odd sizes stay exact."""
    h, w = 1080, 1920
    frame = np.full((h, w, 3), 40, np.uint8)
    frame[:, w // 3 : 2 * w // 3] = 210  # a bright band: the person
    alpha = np.zeros((144, 256), np.float32)
    alpha[:, 256 // 3 : 2 * 256 // 3] = 1.0
    auto = GuidedRefiner().refine(alpha, frame)
    full = GuidedRefiner(apply_scale=1).refine(alpha, frame)
    assert auto.shape == full.shape == (h, w)
    assert np.abs(auto.astype(int) - full).mean() < 2.0
    assert auto[:, w // 2].min() > 240 and auto[:, 10].max() < 15
    odd = np.ascontiguousarray(frame[: 1081 - 2, : 1921 - 2])
    assert GuidedRefiner().refine(alpha, odd).shape == odd.shape[:2]


@pytest.mark.parametrize(("h", "w"), [(800, 600), (720, 1280), (1280, 720)])
def test_guided_applies_at_full_resolution_up_to_720p_pixels(h: int, w: int) -> None:
    """Frames with no more pixels than 1280x720 (a 600x800 portrait included) get the
    full-resolution matte, not an enlarged one."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.random((144, 256), dtype=np.float32)
    auto = GuidedRefiner().refine(alpha, frame)
    full = GuidedRefiner(apply_scale=1).refine(alpha, frame)
    assert np.array_equal(auto, full)
