"""Tests for mattecam.evaluation.metrics on constructed masks with known answers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from mattecam.evaluation.metrics import (
    MetricAccumulator,
    boundary_f,
    boundary_map,
    default_boundary_tolerance,
    flicker,
    iou,
    mae,
)

U8 = npt.NDArray[np.uint8]


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> U8:
    """uint8 mask of the given (h, w) shape with 255 in rows y0:y1, cols x0:x1."""
    m = np.zeros(shape, np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


# --- independent brute-force reference for boundary F ---------------------------------


def ref_boundary(fg: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Foreground pixels with a background 4-neighbour (edge-replicated padding)."""
    p = np.pad(fg, 1, mode="edge")
    c = p[1:-1, 1:-1]
    nb_bg = ~p[:-2, 1:-1] | ~p[2:, 1:-1] | ~p[1:-1, :-2] | ~p[1:-1, 2:]
    out: npt.NDArray[np.bool_] = c & nb_bg
    return out


def ref_boundary_f(alpha01: npt.NDArray[np.float64], mask: U8, r: float) -> float:
    pb = np.argwhere(ref_boundary(alpha01 >= 0.5)).astype(np.float64)
    gb = np.argwhere(ref_boundary(mask > 127)).astype(np.float64)
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0
    d = np.sqrt(((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1))
    p = float(np.mean(d.min(axis=1) <= r))
    rc = float(np.mean(d.min(axis=0) <= r))
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


# --- IoU ------------------------------------------------------------------------------


def test_iou_two_rectangles_known_overlap() -> None:
    a = rect((20, 20), 0, 10, 0, 10)  # 100 px
    b = rect((20, 20), 5, 15, 5, 15)  # 100 px, overlap 5x5 = 25, union 175
    assert iou(a, b) == pytest.approx(25 / 175, abs=1e-12)
    assert iou(a.astype(np.float32) / 255, b) == pytest.approx(1 / 7, abs=1e-12)


def test_iou_nested_and_disjoint() -> None:
    outer = rect((30, 30), 0, 20, 0, 20)  # 400
    inner = rect((30, 30), 5, 15, 5, 15)  # 100, fully inside
    assert iou(inner, outer) == pytest.approx(0.25, abs=1e-12)
    assert iou(rect((30, 30), 0, 5, 0, 5), rect((30, 30), 10, 15, 10, 15)) == 0.0


def test_iou_threshold_is_half() -> None:
    mask = rect((4, 4), 0, 4, 0, 4)
    assert iou(np.full((4, 4), 0.5, np.float32), mask) == 1.0
    assert iou(np.full((4, 4), 0.4999, np.float32), mask) == 0.0
    assert iou(np.full((4, 4), 128, np.uint8), mask) == 1.0
    assert iou(np.full((4, 4), 127, np.uint8), mask) == 0.0
    # mask threshold: > 127 is person
    assert iou(np.ones((4, 4), np.float32), np.full((4, 4), 128, np.uint8)) == 1.0
    assert iou(np.ones((4, 4), np.float32), np.full((4, 4), 127, np.uint8)) == 0.0


def test_iou_empty_cases() -> None:
    empty = np.zeros((8, 8), np.uint8)
    full = np.full((8, 8), 255, np.uint8)
    assert iou(empty, empty) == 1.0
    assert iou(empty, full) == 0.0
    assert iou(full, empty) == 0.0


# --- identical masks ------------------------------------------------------------------


@pytest.mark.parametrize("as_float", [False, True])
def test_identical_masks_are_perfect(as_float: bool) -> None:
    mask = rect((60, 80), 10, 50, 20, 70)
    mask[20:30, 30:40] = 0  # a hole, so there is an inner boundary too
    alpha = mask.astype(np.float32) / 255 if as_float else mask.copy()
    assert iou(alpha, mask) == 1.0
    assert boundary_f(alpha, mask) == 1.0
    assert boundary_f(alpha, mask, tolerance=0) == 1.0
    assert mae(alpha, mask) == 0.0


# --- boundary map ---------------------------------------------------------------------


def test_boundary_map_rectangle_is_its_inner_perimeter() -> None:
    fg = rect((40, 60), 10, 30, 10, 50) > 0  # 20 x 40
    b = boundary_map(fg)
    assert int(b.sum()) == 2 * 40 + 2 * 18  # 116
    expected = fg.copy()
    expected[11:29, 11:49] = False
    np.testing.assert_array_equal(b, expected)


def test_boundary_map_ignores_image_border() -> None:
    assert not boundary_map(np.ones((10, 10), bool)).any()
    # Person touching the bottom edge: no boundary along that edge.
    fg = rect((10, 10), 5, 10, 2, 8) > 0
    b = boundary_map(fg)
    assert not b[9, 3:7].any()
    assert b[5, 2:8].all()
    assert int(b.sum()) == 6 + 2 * 4  # top row + left/right columns (rows 6..9)


def test_boundary_map_matches_reference_on_random_shapes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        fg = rng.random((31, 47)) > 0.5
        np.testing.assert_array_equal(boundary_map(fg), ref_boundary(fg))


# --- boundary F -----------------------------------------------------------------------


def test_default_tolerance() -> None:
    # DAVIS 480p: ceil(0.0075 * hypot(480, 854)) = ceil(7.347) = 8
    assert default_boundary_tolerance(480, 854) == 8.0
    assert default_boundary_tolerance(100, 100) == 2.0  # ceil(1.0607)


@pytest.mark.parametrize("k", [1, 2])
def test_boundary_f_shift_within_tolerance_is_one(k: int) -> None:
    gt = rect((40, 60), 10, 30, 10, 50)
    pred = rect((40, 60), 10, 30, 10 + k, 50 + k)
    assert boundary_f(pred, gt, tolerance=2) == 1.0
    pred_v = rect((40, 60), 10 + k, 30 + k, 10, 50)
    assert boundary_f(pred_v, gt, tolerance=2) == 1.0


def test_boundary_f_shift_beyond_tolerance_hand_computed() -> None:
    # GT 20x40 rectangle, prediction shifted right by 5 px, radius 2.
    # Each boundary has 116 pixels. Matched predicted pixels:
    #   top & bottom rows: cols 15..51 (37 each; 50, 51 are within 2 of GT col 49)
    #   left column (col 15, rows 11..28): rows 11, 12, 27, 28 (near GT top/bottom rows)
    #   right column (col 54): none (GT col 49 is 5 px away)
    # -> P = 78/116, and by symmetry R = 78/116, so F = 78/116.
    gt = rect((40, 70), 10, 30, 10, 50)
    pred = rect((40, 70), 10, 30, 15, 55)
    assert boundary_f(pred, gt, tolerance=2) == pytest.approx(78 / 116, abs=1e-12)
    assert boundary_f(gt, pred, tolerance=2) == pytest.approx(78 / 116, abs=1e-12)


def test_boundary_f_thin_structure() -> None:
    gt = rect((30, 40), 10, 11, 5, 35)  # 1-px horizontal line: every pixel is boundary
    shifted3 = rect((30, 40), 13, 14, 5, 35)
    assert boundary_f(shifted3, gt, tolerance=2) == 0.0
    assert boundary_f(shifted3, gt, tolerance=2.9) == 0.0
    assert boundary_f(shifted3, gt, tolerance=3) == 1.0
    # diagonal offset (3, 4) -> distance 5: matched only from radius 5 for interior pixels
    diag = rect((30, 40), 13, 14, 9, 39)
    assert boundary_f(diag, gt, tolerance=5) == 1.0
    assert boundary_f(diag, gt, tolerance=4.9) < 1.0


def test_boundary_f_default_tolerance_at_480p() -> None:
    gt = rect((480, 854), 200, 201, 100, 700)  # thin line
    assert boundary_f(rect((480, 854), 208, 209, 100, 700), gt) == 1.0  # 8 px <= 8
    assert boundary_f(rect((480, 854), 209, 210, 100, 700), gt) == 0.0  # 9 px > 8


def test_boundary_f_empty_cases() -> None:
    empty = np.zeros((20, 20), np.uint8)
    full = np.full((20, 20), 255, np.uint8)
    box = rect((20, 20), 5, 15, 5, 15)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(full, full) == 1.0  # no boundary in either (image border ignored)
    assert boundary_f(full, empty) == 1.0  # likewise: both boundaryless
    assert boundary_f(empty, box) == 0.0
    assert boundary_f(box, empty) == 0.0


def test_boundary_f_matches_brute_force_reference() -> None:
    rng = np.random.default_rng(1)
    for i in range(12):
        h, w = 36, 44
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.float64)
        for _ in range(3):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            gt[y : y + rng.integers(2, 15), x : x + rng.integers(2, 15)] = 255
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            pred[y : y + rng.integers(2, 15), x : x + rng.integers(2, 15)] = rng.uniform(0.3, 1.0)
        for r in (0.0, 1.0, 1.5, 2.0, 3.0, 4.5):
            got = boundary_f(pred, gt, tolerance=r)
            assert got == pytest.approx(ref_boundary_f(pred, gt, r), abs=1e-9), (i, r)


@pytest.mark.parametrize("r", [8.0, 19.5, 20.0, 20.5, 25.0])
def test_boundary_f_large_radii_match_reference(r: float) -> None:
    # Covers both the dilation path (<= 20 px) and the distance-transform path.
    gt = rect((70, 90), 10, 40, 10, 60)
    gt[45:47, 20:80] = 255  # thin bar below the box
    pred = rect((70, 90), 12, 52, 25, 85)
    pred[60:61, 5:30] = 255
    alpha = pred.astype(np.float64) / 255
    assert boundary_f(pred, gt, tolerance=r) == pytest.approx(
        ref_boundary_f(alpha, gt, r), abs=1e-9
    )


def test_boundary_f_full_size_shift_within_tolerance() -> None:
    yy, xx = np.mgrid[0:480, 0:854]
    gt = (((yy - 260) / 200.0) ** 2 + ((xx - 427) / 150.0) ** 2 < 1).astype(np.uint8) * 255
    alpha = np.roll(gt, 3, axis=1).astype(np.float32) / 255
    assert boundary_f(alpha, gt) == 1.0  # 3 px is inside the default 8 px radius
    assert boundary_f(np.roll(gt, 12, axis=1), gt) < 0.5


def test_boundary_f_rejects_negative_tolerance() -> None:
    m = rect((10, 10), 2, 8, 2, 8)
    with pytest.raises(ValueError):
        boundary_f(m, m, tolerance=-1)


# --- MAE ------------------------------------------------------------------------------


def test_mae_constant_quarter_alpha() -> None:
    mask = rect((10, 10), 0, 4, 0, 10)  # 40 person px, 60 background px
    alpha = np.full((10, 10), 0.25, np.float32)
    # 40 * 0.75 + 60 * 0.25 = 30 + 15 = 45 over 100 px
    assert mae(alpha, mask) == pytest.approx(0.45, abs=1e-7)
    assert mae(np.zeros((10, 10), np.float32), mask) == pytest.approx(0.4, abs=1e-7)
    assert mae(np.ones((10, 10), np.float32), mask) == pytest.approx(0.6, abs=1e-7)


def test_mae_uses_soft_ground_truth() -> None:
    mask = np.full((4, 4), 51, np.uint8)  # 0.2
    assert mae(np.zeros((4, 4), np.float32), mask) == pytest.approx(0.2, abs=1e-7)


# --- uint8 vs float -------------------------------------------------------------------


def test_uint8_and_float_alpha_agree() -> None:
    rng = np.random.default_rng(2)
    mask = rect((48, 64), 8, 40, 10, 50)
    a8 = rng.integers(0, 256, size=(48, 64), dtype=np.uint8)
    a8[8:40, 10:50] = np.maximum(a8[8:40, 10:50], 200)
    af = a8.astype(np.float32) / 255
    af64 = a8.astype(np.float64) / 255
    for a in (af, af64):
        assert iou(a8, mask) == iou(a, mask)
        assert boundary_f(a8, mask) == boundary_f(a, mask)
        assert mae(a8, mask) == pytest.approx(mae(a, mask), abs=1e-7)
    b8 = np.roll(a8, 1, axis=0)
    assert flicker(a8, b8, mask, mask) == pytest.approx(
        flicker(af, b8.astype(np.float32) / 255, mask, mask), abs=1e-7
    )


# --- flicker --------------------------------------------------------------------------


def test_flicker_constant_sequence_is_zero() -> None:
    mask = rect((20, 20), 5, 15, 5, 15)
    alpha = mask.astype(np.float32) / 255 * 0.7
    assert flicker(alpha, alpha.copy(), mask, mask) == 0.0


def test_flicker_alternating_by_point_one() -> None:
    mask = rect((20, 20), 5, 15, 5, 15)
    a0 = np.full((20, 20), 0.5, np.float32)
    a1 = np.full((20, 20), 0.6, np.float32)
    assert flicker(a0, a1, mask, mask) == pytest.approx(0.1, abs=1e-6)
    assert flicker(a1, a0, mask, mask) == pytest.approx(0.1, abs=1e-6)
    u0 = np.full((20, 20), 100, np.uint8)
    u1 = np.full((20, 20), 151, np.uint8)  # +51 = 0.2
    assert flicker(u0, u1, mask, mask) == pytest.approx(0.2, abs=1e-6)


def test_flicker_excludes_pixels_whose_ground_truth_changed() -> None:
    m0 = rect((20, 20), 5, 15, 5, 15)
    m1 = rect((20, 20), 5, 15, 6, 16)  # person moved right by 1 px
    changed = m0 != m1
    assert changed.sum() == 20  # col 5 and col 15, rows 5..14
    a0 = np.full((20, 20), 0.5, np.float32)
    a1 = np.full((20, 20), 0.6, np.float32)
    a0[changed] = 0.0
    a1[changed] = 1.0  # huge change, but only where the GT changed
    assert flicker(a0, a1, m0, m1) == pytest.approx(0.1, abs=1e-6)
    # Only the stable pixels count: changing a stable pixel does change the result.
    a1[0, 0] = 0.5 + 0.1 + 380 * 0.1  # adds 38 to the sum over 380 stable pixels
    assert flicker(a0, a1, m0, m1) == pytest.approx(0.2, abs=1e-5)


def test_flicker_none_when_every_pixel_changed() -> None:
    empty = np.zeros((5, 5), np.uint8)
    full = np.full((5, 5), 255, np.uint8)
    a = np.zeros((5, 5), np.float32)
    assert flicker(a, a, empty, full) is None


# --- accumulator ----------------------------------------------------------------------


def test_accumulator_means() -> None:
    acc = MetricAccumulator(tolerance=2)
    assert acc.summary() == {"n": 0, "iou": None, "boundary_f": None, "mae": None}
    a = rect((20, 20), 0, 10, 0, 10)
    b = rect((20, 20), 5, 15, 5, 15)
    acc.add(a, a)  # iou 1, bf 1, mae 0
    s = acc.add(a, b)  # iou 1/7, mae 150 / 400
    assert s["iou"] == pytest.approx(1 / 7)
    assert s["mae"] == pytest.approx(150 / 400)
    summary = acc.summary()
    assert set(summary) == {"n", "iou", "boundary_f", "mae"}
    assert summary["n"] == 2
    assert summary["iou"] == pytest.approx((1 + 1 / 7) / 2)
    assert summary["mae"] == pytest.approx((0 + 150 / 400) / 2)
    assert summary["boundary_f"] == pytest.approx((1 + boundary_f(a, b, 2)) / 2)


def test_accumulator_temporal_flicker() -> None:
    mask = rect((16, 16), 4, 12, 4, 12)
    acc = MetricAccumulator(temporal=True)
    first = acc.add(np.full((16, 16), 0.5, np.float32), mask)
    assert first["flicker"] is None  # no previous frame
    for i in range(1, 5):
        acc.add(np.full((16, 16), 0.5 + 0.1 * (i % 2), np.float32), mask)
    s = acc.summary()
    assert s["n"] == 5
    assert s["flicker"] == pytest.approx(0.1, abs=1e-6)  # mean over 4 pairs
    # alpha 0.5 -> mae 0.5; alpha 0.6 -> (64 * 0.4 + 192 * 0.6) / 256 = 0.55
    assert s["mae"] == pytest.approx((3 * 0.5 + 2 * 0.55) / 5, abs=1e-6)


def test_accumulator_reset_and_no_aliasing() -> None:
    mask = rect((8, 8), 2, 6, 2, 6)
    acc = MetricAccumulator(temporal=True)
    a = np.full((8, 8), 0.5, np.float32)
    acc.add(a, mask)
    a[:] = 0.9  # mutating the caller's buffer must not affect the stored frame
    assert acc.add(np.full((8, 8), 0.5, np.float32), mask)["flicker"] == 0.0
    acc.reset_sequence()
    assert acc.add(np.ones((8, 8), np.float32), mask)["flicker"] is None
    assert acc.summary()["flicker"] == 0.0
    assert MetricAccumulator(temporal=True).summary()["flicker"] is None


# --- validation -----------------------------------------------------------------------


def test_input_validation() -> None:
    m = rect((10, 10), 2, 8, 2, 8)
    with pytest.raises(ValueError):
        iou(np.zeros((10, 11), np.float32), m)
    with pytest.raises(ValueError):
        mae(np.zeros((10, 10, 1), np.float32), m)
    with pytest.raises(TypeError):
        iou(np.zeros((10, 10), np.int32), m)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        iou(np.zeros((10, 10), np.float32), m.astype(np.float32))
    with pytest.raises(ValueError):
        flicker(np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32), m, m[:5])
