"""The processing stage: segment, refine and composite one frame."""

from __future__ import annotations

import threading
import time
from typing import Any

from mattecam.compositing.backgrounds import Background
from mattecam.compositing.blend import Blender, light_wrap
from mattecam.frame import Frame
from mattecam.imaging.yuv import as_i420, mirror
from mattecam.matte.base import Refiner
from mattecam.matte.stage import MatteStage
from mattecam.segmentation.base import Segmenter


class FrameProcessor:
    """Turns a camera frame into the composited output frame: mirror, matte (the
    :class:`~mattecam.matte.stage.MatteStage`), background, blend.

    Owned by the processing thread. Frames stay in the camera's YUV from end to end: the
    input is limited-range :class:`~mattecam.imaging.yuv.I420` (a BGR frame is converted
    first), the matte follows its Y plane, the background is rendered and blended in I420
    (Y at full resolution, chroma at a quarter), and the output is a new I420 picture. The
    output frame keeps the input's ``seq``, ``t_capture`` and ``pts`` and adds per-stage
    timings in milliseconds: ``preprocess``, ``inference``, ``refine``, ``composite``
    (background rendering and blend).

    Live changes: :meth:`update` may be called from any thread with new, ready-built stages
    or settings; they take effect at the next frame boundary, on the processing thread,
    where the stages they replace are closed. Nothing else is reopened.
    """

    def __init__(
        self,
        matting: MatteStage,
        background: Background,
        *,
        mirror: bool = False,
        light_wrap: float = 0.0,
    ) -> None:
        self.matting = matting
        self.background = background
        self.mirror = mirror
        self.light_wrap = light_wrap
        self._blender = Blender()
        self._lock = threading.Lock()  # guards _pending only
        self._pending: dict[str, Any] = {}

    def update(
        self,
        *,
        segmenter: Segmenter | None = None,
        refiner: Refiner | None = None,
        background: Background | None = None,
        mirror: bool | None = None,
        light_wrap: float | None = None,
        crop: bool | None = None,
    ) -> None:
        """Queue changes for the next frame (any thread). A later call for the same item
        before that frame replaces the earlier one, which is then closed."""
        changes = {
            "segmenter": segmenter,
            "refiner": refiner,
            "background": background,
            "mirror": mirror,
            "light_wrap": light_wrap,
            "crop": crop,
        }
        with self._lock:
            for key, value in changes.items():
                if value is None:
                    continue
                superseded = self._pending.get(key)
                if superseded is not None and hasattr(superseded, "close"):
                    superseded.close()
                self._pending[key] = value

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        self.matting.swap(
            segmenter=pending.get("segmenter"),
            refiner=pending.get("refiner"),
            crop=pending.get("crop"),
        )
        if "mirror" in pending and pending["mirror"] != self.mirror:
            self.mirror = pending["mirror"]
            self.matting.reset()  # the person's place and the temporal state are mirrored
        if "light_wrap" in pending:
            self.light_wrap = pending["light_wrap"]
        background = pending.get("background")
        if background is not None and background is not self.background:
            old, self.background = self.background, background
            old.close()

    def process(self, frame: Frame) -> Frame:
        if self._pending:
            self._apply_pending()
        picture = as_i420(frame.image)
        timings = frame.timings
        if self.mirror:
            picture = mirror(picture)
        if not self.background.replaces:
            return Frame(picture, frame.seq, frame.t_capture, frame.pts, timings)
        matte = self.matting.matte(picture, timings)
        t3 = time.perf_counter()
        bg = self.background.render(picture, matte)
        out = self._blender.blend(picture, bg, matte)
        if self.light_wrap > 0:
            light_wrap(out, bg, matte, self.light_wrap)
        t4 = time.perf_counter()
        timings["composite"] = (t4 - t3) * 1e3
        return Frame(out, frame.seq, frame.t_capture, frame.pts, timings)

    def close(self) -> None:
        """Release the model and the background, and anything still queued."""
        self._apply_pending()
        self.matting.close()
        self.background.close()
