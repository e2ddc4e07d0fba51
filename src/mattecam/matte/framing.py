"""Framing: run the model on a crop around the person instead of the whole frame."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mattecam.frame import Image
from mattecam.imaging.yuv import I420, model_input
from mattecam.segmentation.base import Alpha, Segmenter

Rect = tuple[int, int, int, int]
"""``(x, y, width, height)`` in frame pixels."""


@dataclass(frozen=True, slots=True)
class Framed:
    """What the model saw for one frame: ``alpha`` covers ``rect`` of the frame, and
    ``small`` is that part of the frame shrunk to the model's input size."""

    alpha: Alpha
    small: Image
    rect: Rect
    preprocess_ms: float
    inference_ms: float


class Framing:
    """Chooses the part of each frame the model sees.

    The models see 256x144 or 256x256 pixels, so a whole 720p frame is shrunk five-fold and
    a person standing back from the camera is only a few dozen model pixels wide. Framing
    crops to the person instead: the bounding box of the previous frame's mask
    (``alpha >= 0.5``) plus ``margin`` of its longer side on every side. Measured on the
    ground-truth clips (people filling 6-20% of the frame) this lifts IoU by 0.07-0.3
    and boundary F by 0.07-0.3; on close-up portraits the crop is the whole frame and
    nothing changes (see docs/quality.md).

    To keep the matte steady the crop stays put while the person's box (with its margin)
    is inside it, follows a person who moves by shifting, keeping its size (with ``slack``
    of extra room on the side they moved to), and is made anew when the box no longer fits
    or the crop it needs is smaller than ``shrink_below`` of the current one.
    A dimension the crop would cover ``full_above`` of anyway uses the whole frame, so a
    talking head close to the camera gets exactly the uncropped result at no cost, and a
    crop is stretched along its shorter side until it is at most ``max_squash`` times off
    the model's aspect ratio, and never smaller than the model's input.

    The whole frame is segmented when there is no previous mask (the first frame, after
    :meth:`reset`, or when the person was lost), and additionally every ``rescan_every``
    frames while cropping, so that someone stepping in beside the crop is found within a
    second. The extra pass costs one inference per ``rescan_every`` frames.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        margin: float = 0.1,
        slack: float = 0.05,
        shrink_below: float = 0.6,
        full_above: float = 0.8,
        max_squash: float = 2.0,
        rescan_every: int = 30,
    ) -> None:
        self.enabled = enabled
        self.margin = margin
        self.slack = slack
        self.shrink_below = shrink_below
        self.full_above = full_above
        self.max_squash = max_squash
        self.rescan_every = max(1, rescan_every)
        self.rect: Rect | None = None  # where the next frame's model input comes from
        self._box: tuple[float, float, float, float] | None = None  # person, last seen
        self._since_scan = 0

    def reset(self) -> None:
        self.rect = self._box = None
        self._since_scan = 0

    def segment(self, picture: I420, segmenter: Segmenter) -> Framed:
        """Run ``segmenter`` on the right part of ``picture`` and update the framing."""
        w, h = picture.size
        full: Rect = (0, 0, w, h)
        mw, mh = segmenter.input_size
        clock = [0.0, 0.0]  # preprocess, inference (ms), summed over this frame's runs

        def run(region: Rect) -> tuple[Alpha, Image]:
            t0 = time.perf_counter()
            small = model_input(picture, region, mw, mh)
            tensor = segmenter.tensor(small)
            t1 = time.perf_counter()
            alpha = segmenter.run(tensor)
            clock[0] += (t1 - t0) * 1e3
            clock[1] += (time.perf_counter() - t1) * 1e3
            return alpha, small

        rect = self.rect if self.enabled else full
        if rect is not None and not _inside(rect, w, h):
            rect = self.rect = self._box = None  # the frame size changed
        if rect is None or (rect != full and self._since_scan >= self.rescan_every):
            alpha, small = run(full)
            self._since_scan = 0
            scanned = _box(alpha, full)
            box = scanned if self._box is None or rect is None else _union(scanned, self._box)
            rect = self.rect = self._choose(box, w, h, mw, mh)
            if rect == full:
                self._box = scanned
                return Framed(alpha, small, full, *clock)
        self._since_scan = 0 if rect == full else self._since_scan + 1
        alpha, small = run(rect)
        if self.enabled:
            self._box = _box(alpha, rect)
            self.rect = self._choose(self._box, w, h, mw, mh)
        return Framed(alpha, small, rect, *clock)

    def _choose(
        self, box: tuple[float, float, float, float] | None, w: int, h: int, mw: int, mh: int
    ) -> Rect:
        """The crop for a person at ``box`` (None: not found, so the whole frame), with
        hysteresis."""
        if box is None:
            return (0, 0, w, h)
        x0, y0, x1, y1 = box
        m = self.margin * max(x1 - x0, y1 - y0)
        want = (max(x0 - m, 0.0), max(y0 - m, 0.0), min(x1 + m, float(w)), min(y1 + m, float(h)))
        s = self.slack * max(want[2] - want[0], want[3] - want[1])
        new = self._fit_frame((want[0] - s, want[1] - s, want[2] + s, want[3] + s), w, h, mw, mh)
        cur = self.rect
        if cur is None or new[2] * new[3] < self.shrink_below * cur[2] * cur[3]:
            return new
        # Keep the crop's size and move it as little as needed (with slack on the side the
        # person moved to): the refiner's buffers keep their shape, its state a translation.
        cx, cy, cw, ch = cur
        x = _follow(cx, cw, (want[0], want[2]), s, w)
        y = _follow(cy, ch, (want[1], want[3]), s, h)
        return new if x is None or y is None else (x, y, cw, ch)

    def _fit_frame(
        self, want: tuple[float, float, float, float], w: int, h: int, mw: int, mh: int
    ) -> Rect:
        x0, y0, x1, y1 = want
        cw, ch = max(x1 - x0, float(mw)), max(y1 - y0, float(mh))
        model_aspect = mw / mh
        if cw / ch > model_aspect * self.max_squash:
            ch = cw / (model_aspect * self.max_squash)
        elif cw / ch < model_aspect / self.max_squash:
            cw = ch * model_aspect / self.max_squash
        if cw >= self.full_above * w:
            cw = w
        if ch >= self.full_above * h:
            ch = h
        cw, ch = min(round(cw), w), min(round(ch), h)
        x = round(min(max((x0 + x1 - cw) / 2, 0), w - cw))
        y = round(min(max((y0 + y1 - ch) / 2, 0), h - ch))
        return (x, y, cw, ch)


def _follow(
    start: int, size: int, span: tuple[float, float], slack: float, limit: int
) -> int | None:
    """Where a crop of ``size`` starting at ``start`` must move (as little as it can) to
    hold ``span`` with ``slack`` to spare on the side it moves to; None when it cannot."""
    lo, hi = span
    first, last = hi - size, lo  # starts at which lo..hi fits
    if first > last:
        return None
    pos = float(start)
    if pos > last:
        pos = max(first, lo - slack)
    elif pos < first:
        pos = min(last, hi + slack - size)
    return int(min(max(round(pos), 0), limit - size))


def _inside(rect: Rect, w: int, h: int) -> bool:
    x, y, cw, ch = rect
    return x >= 0 and y >= 0 and x + cw <= w and y + ch <= h


def _box(alpha: Alpha, rect: Rect) -> tuple[float, float, float, float] | None:
    """Bounding box of ``alpha >= 0.5`` in frame pixels; ``alpha`` covers ``rect``."""
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((alpha[rows[0] : rows[-1] + 1] >= 0.5).any(axis=0))
    x, y, cw, ch = rect
    ah, aw = alpha.shape
    sx, sy = cw / aw, ch / ah
    return (x + cols[0] * sx, y + rows[0] * sy, x + (cols[-1] + 1) * sx, y + (rows[-1] + 1) * sy)


def _union(
    a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def remap_matrix(old: Rect, new: Rect, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine matrix taking model-resolution pixels of crop ``old`` to those of crop
    ``new`` (``size`` is the model's ``(width, height)``), for ``cv2.warpAffine``."""
    mw, mh = size
    (xo, yo, wo, ho), (xn, yn, wn, hn) = old, new
    sx, sy = wo / wn, ho / hn
    tx = (xo - xn) * mw / wn + 0.5 * sx - 0.5
    ty = (yo - yn) * mh / hn + 0.5 * sy - 0.5
    return np.array([[sx, 0.0, tx], [0.0, sy, ty]], np.float64)
