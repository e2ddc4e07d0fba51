"""Per-frame and temporal metrics for scoring a person matte against ground truth."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "MetricAccumulator",
    "boundary_f",
    "boundary_map",
    "default_boundary_tolerance",
    "flicker",
    "iou",
    "mae",
]

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
AlphaArray = npt.NDArray[np.floating] | npt.NDArray[np.uint8]
MaskArray = npt.NDArray[np.uint8]

# Fraction of the image diagonal used as boundary tolerance (DAVIS ``bound_th``).
_DAVIS_BOUND_TH = 0.0075
# 4-connected cross: a pixel is a boundary pixel if any 4-neighbour differs.
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _alpha01(alpha: AlphaArray) -> FloatArray:
    """Return ``alpha`` as float32 in 0..1 (uint8 is divided by 255).

    Floating input is assumed to already be in [0, 1] and is not clipped.
    """
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"alpha must be a 2-D HxW array, got shape {a.shape}")
    if a.dtype == np.uint8:
        out: FloatArray = a.astype(np.float32)
        out /= np.float32(255.0)
        return out
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32, copy=False)
    raise TypeError(f"alpha must be uint8 (0..255) or float (0..1), got {a.dtype}")


def _check_mask(mask: MaskArray) -> MaskArray:
    """Validate a ground-truth mask (2-D uint8) and return it as an ndarray."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {m.shape}")
    if m.dtype != np.uint8:
        raise TypeError(f"mask must be uint8 (255 = person), got {m.dtype}")
    return m


def _mask_fg(mask: MaskArray) -> BoolArray:
    """Return the ground-truth foreground (``mask > 127``) as a bool array."""
    fg: BoolArray = _check_mask(mask) > 127
    return fg


def _check_same_shape(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")


def _pred_fg(alpha01: FloatArray) -> BoolArray:
    """Binarise a 0..1 matte: foreground where ``alpha >= 0.5``."""
    fg: BoolArray = alpha01 >= np.float32(0.5)
    return fg


def iou(alpha: AlphaArray, mask: MaskArray) -> float:
    """Intersection over union of ``alpha >= 0.5`` and the ground-truth person.

    Args:
        alpha: Predicted matte, HxW, float in [0, 1] or uint8 in [0, 255].
        mask: Ground truth, HxW uint8; values > 127 are person.

    Returns:
        IoU in [0, 1]; 1.0 when both prediction and ground truth are empty.
    """
    a = _alpha01(alpha)
    gt = _mask_fg(mask)
    _check_same_shape(a, gt)
    pred = _pred_fg(a)
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt)) / union


def boundary_map(fg: BoolArray) -> BoolArray:
    """One-pixel-thick boundary of a binary map, on the foreground side.

    A pixel is a boundary pixel if it is foreground and at least one of its
    4-neighbours is background. Pixels outside the image are treated as copies
    of the nearest edge pixel, so the image border itself is never a boundary
    (a mask touching the frame edge gets no boundary along that edge).
    """
    f = np.asarray(fg, dtype=np.uint8)
    eroded = np.asarray(cv2.erode(f, _CROSS, borderType=cv2.BORDER_REPLICATE))
    edge: BoolArray = (f != 0) & (eroded == 0)
    return edge


def default_boundary_tolerance(height: int, width: int) -> float:
    """DAVIS boundary tolerance in pixels: ``ceil(0.0075 * image diagonal)``."""
    return float(math.ceil(_DAVIS_BOUND_TH * math.hypot(height, width)))


# Radii up to this use an exact-disk dilation (faster for small radii); larger radii
# use a Euclidean distance transform, whose cost does not grow with the radius.
_MAX_DILATION_RADIUS = 20.0
# Slack for float round-off when comparing squared / transformed distances to a radius.
_EPS = 1e-4


@functools.lru_cache(maxsize=16)
def _disk(radius: float) -> npt.NDArray[np.uint8]:
    """Exact Euclidean disk: offsets (dy, dx) with ``dy**2 + dx**2 <= radius**2``.

    Unlike ``cv2.getStructuringElement(MORPH_ELLIPSE, ...)``, which is slightly
    larger than a true disk, this matches ``skimage.morphology.disk`` used by DAVIS.
    """
    n = math.floor(radius + _EPS)
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    disk: npt.NDArray[np.uint8] = (yy * yy + xx * xx <= radius * radius + _EPS).astype(np.uint8)
    return disk


def _within(points: BoolArray, targets: BoolArray, radius: float) -> int:
    """Count ``points`` pixels within Euclidean ``radius`` of any ``targets`` pixel."""
    if radius <= _MAX_DILATION_RADIUS:
        near = np.asarray(cv2.dilate(targets.view(np.uint8), _disk(radius))) != 0
    else:
        # distanceTransform gives, per pixel, the distance to the nearest zero pixel.
        src = np.where(targets, np.uint8(0), np.uint8(255))
        dist = np.asarray(cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE))
        near = dist <= radius + _EPS
    return int(np.count_nonzero(points & near))


def boundary_f(alpha: AlphaArray, mask: MaskArray, tolerance: float | None = None) -> float:
    """Boundary F-measure as in the DAVIS benchmark (``db_eval_boundary``).

    Boundaries of the binarised prediction (``alpha >= 0.5``) and of the ground
    truth are extracted with :func:`boundary_map`. A predicted boundary pixel is
    correct if a ground-truth boundary pixel lies within Euclidean distance
    ``tolerance`` (an exact disk of that radius, as DAVIS' ``disk`` dilation;
    computed by dilation for small radii and by a distance transform for large
    ones); recall is the same test in reverse. ``F = 2PR / (P + R)``.

    Args:
        alpha: Predicted matte, HxW, float in [0, 1] or uint8 in [0, 255].
        mask: Ground truth, HxW uint8; values > 127 are person.
        tolerance: Match radius in pixels. ``None`` uses the DAVIS default
            ``ceil(0.0075 * sqrt(H**2 + W**2))`` (8 px at 854x480).

    Returns:
        F in [0, 1]; 1.0 if neither map has a boundary, 0.0 if exactly one has.
    """
    a = _alpha01(alpha)
    gt = _mask_fg(mask)
    _check_same_shape(a, gt)
    if tolerance is None:
        tolerance = default_boundary_tolerance(gt.shape[0], gt.shape[1])
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")

    pred_b = boundary_map(_pred_fg(a))
    gt_b = boundary_map(gt)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0

    precision = _within(pred_b, gt_b, tolerance) / n_pred
    recall = _within(gt_b, pred_b, tolerance) / n_gt
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def mae(alpha: AlphaArray, mask: MaskArray) -> float:
    """Mean absolute error ``mean(|alpha - mask / 255|)`` with alpha in 0..1.

    Unlike :func:`iou`, the ground truth is used as-is (``mask / 255``), not
    thresholded. The result is in alpha units (0..1), not 0..255.
    """
    a = _alpha01(alpha)
    m = _check_mask(mask)
    _check_same_shape(a, m)
    gt = m.astype(np.float32) / np.float32(255.0)
    return float(np.mean(np.abs(a - gt), dtype=np.float64))


def flicker(
    prev_alpha: AlphaArray,
    alpha: AlphaArray,
    prev_mask: MaskArray,
    mask: MaskArray,
) -> float | None:
    """Temporal instability: ``mean(|alpha_t - alpha_{t-1}|)`` (alpha in 0..1).

    Only pixels whose ground truth is identical in both frames
    (``prev_mask == mask``) are counted, so genuine motion is not penalised.

    Returns:
        The mean absolute frame-to-frame change in alpha units, or ``None``
        if every pixel's ground truth changed.
    """
    a0 = _alpha01(prev_alpha)
    a1 = _alpha01(alpha)
    m0 = _check_mask(prev_mask)
    m1 = _check_mask(mask)
    for arr in (a1, m0, m1):
        _check_same_shape(a0, arr)
    stable = m0 == m1
    if not bool(stable.any()):
        return None
    diff = np.abs(a1 - a0)[stable]
    return float(np.mean(diff, dtype=np.float64))


class MetricAccumulator:
    """Running means of :func:`iou`, :func:`boundary_f`, :func:`mae` (and flicker).

    Call :meth:`add` once per frame in order. With ``temporal=True`` the
    previous frame is remembered and :func:`flicker` is computed for each
    consecutive pair; call :meth:`reset_sequence` between unrelated clips.
    """

    def __init__(self, temporal: bool = False, tolerance: float | None = None) -> None:
        """Create an empty accumulator.

        Args:
            temporal: Also compute flicker between consecutive frames.
            tolerance: Boundary-F radius in pixels (``None`` = DAVIS default).
        """
        self.temporal = temporal
        self.tolerance = tolerance
        self.n = 0
        self._iou_sum = 0.0
        self._bf_sum = 0.0
        self._mae_sum = 0.0
        self._flicker_sum = 0.0
        self._flicker_n = 0
        self._prev: tuple[FloatArray, MaskArray] | None = None

    def add(self, alpha: AlphaArray, mask: MaskArray) -> dict[str, float | None]:
        """Score one frame, add it to the running means and return its scores."""
        a = _alpha01(alpha)
        m = np.asarray(mask)
        frame_iou = iou(a, m)
        frame_bf = boundary_f(a, m, self.tolerance)
        frame_mae = mae(a, m)
        scores: dict[str, float | None] = {
            "iou": frame_iou,
            "boundary_f": frame_bf,
            "mae": frame_mae,
        }
        self.n += 1
        self._iou_sum += frame_iou
        self._bf_sum += frame_bf
        self._mae_sum += frame_mae
        if self.temporal:
            fl: float | None = None
            if self._prev is not None:
                fl = flicker(self._prev[0], a, self._prev[1], m)
                if fl is not None:
                    self._flicker_sum += fl
                    self._flicker_n += 1
            scores["flicker"] = fl
            self._prev = (a.copy(), m.copy())
        return scores

    def reset_sequence(self) -> None:
        """Forget the previous frame so the next :meth:`add` starts a new clip."""
        self._prev = None

    def summary(self) -> dict[str, float | int | None]:
        """Return ``n`` and the per-frame means of ``iou``, ``boundary_f``, ``mae``.

        With ``temporal=True`` also ``flicker``: the mean over consecutive pairs
        that had at least one pixel with unchanged ground truth. Means are
        ``None`` when nothing has been accumulated.
        """
        out: dict[str, float | int | None] = {"n": self.n}
        for key, total in (
            ("iou", self._iou_sum),
            ("boundary_f", self._bf_sum),
            ("mae", self._mae_sum),
        ):
            out[key] = total / self.n if self.n else None
        if self.temporal:
            out["flicker"] = self._flicker_sum / self._flicker_n if self._flicker_n else None
        return out
