"""A preview window (Tk), fed newest-frame-wins so it can never slow the pipeline."""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Any

import cv2
import numpy as np

from mattecam.errors import SinkError
from mattecam.frame import Frame
from mattecam.imaging.yuv import as_bgr
from mattecam.sinks.base import Sink
from mattecam.slot import Slot

log = logging.getLogger(__name__)


class PreviewSink(Sink):
    """Shows frames in a window; ``q``, Esc or closing the window asks the pipeline to stop.

    Tk is not thread-safe, so the window lives on its own thread ("preview"), which owns every
    Tk object and polls a one-slot handoff: :meth:`write` (output thread) only offers the frame,
    and the window's thread converts the pictures it shows (I420 or BGR) at its own rate.
    The window is at most ``max_width`` pixels wide.
    """

    live = True

    def __init__(self, *, title: str = "mattecam", max_width: int = 1280) -> None:
        self.title = title
        self.max_width = max_width
        self._slot: Slot[Frame] = Slot()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.frames_shown = 0

    def open(self, size: tuple[int, int], fps: float) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError(
                "--preview needs a graphical session, but DISPLAY is not set. Run mattecam "
                "from a desktop terminal, or drop --preview."
            )
        self._size = size
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or self._error is not None:
            self.close()
            raise SinkError(f"cannot open the preview window: {self._error or 'timed out'}")

    def _run(self) -> None:
        try:
            import tkinter as tk
        except ImportError as e:
            self._error = SinkError(
                f"the preview needs Tk ({e}); install it (Debian/Ubuntu: sudo apt install "
                "python3-tk) or drop --preview."
            )
            self._ready.set()
            return
        try:
            root = tk.Tk()
        except tk.TclError as e:
            self._error = e
            self._ready.set()
            return
        try:
            self._show(tk, root)
        except Exception as e:  # reported to the pipeline through stop_requested
            log.error("preview window failed: %s", e)
            self._error = e
            self.stop_requested = True
        finally:
            self._ready.set()
            # Every Tk object must die on this thread: Tcl aborts if another thread frees it.
            root.destroy()
            del root
            gc.collect()

    def _show(self, tk: Any, root: Any) -> None:
        """The window's main loop; returns when :meth:`close` is called."""
        root.title(self.title)
        label = tk.Label(root, borderwidth=0)
        label.pack()
        root.bind("<Key-q>", lambda _e: self._user_stop())
        root.bind("<Escape>", lambda _e: self._user_stop())
        root.protocol("WM_DELETE_WINDOW", self._user_stop)
        photo: list[Any] = []

        def poll() -> None:
            if self._stop.is_set():
                root.quit()
                return
            frame = self._slot.get(timeout=0)
            if frame is not None:
                photo[:] = [tk.PhotoImage(data=self._ppm(frame), format="PPM")]
                label.configure(image=photo[0])
                self.frames_shown += 1
            root.after(5, poll)

        root.after(0, poll)
        self._ready.set()
        root.mainloop()
        photo.clear()

    def _ppm(self, frame: Frame) -> bytes:
        image = as_bgr(frame.image)
        h, w = image.shape[:2]
        if w > self.max_width:
            h, w = round(h * self.max_width / w), self.max_width
            image = np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), np.uint8)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return f"P6 {w} {h} 255 ".encode() + rgb.tobytes()

    def _user_stop(self) -> None:
        log.info("preview closed by the user")
        self.stop_requested = True

    def write(self, frame: Frame) -> None:
        self._slot.put(frame)
        self.frames_written += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("the preview thread did not stop in time")
            self._thread = None

    def describe(self) -> str:
        return "preview window"
