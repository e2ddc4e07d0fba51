"""Segmentation with a TFLite model run by LiteRT (ai-edge-litert) on XNNPACK."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mattecam.errors import ModelError, UnsupportedFormatError
from mattecam.segmentation.base import Alpha, Segmenter

log = logging.getLogger(__name__)


class LiteRTSegmenter(Segmenter):
    """Runs a MediaPipe-style selfie segmentation model: (1, h, w, 3) RGB float in [0, 1] in,
    (1, h, w, 1) or (1, h, w) person probability out.

    One interpreter thread by default: multi-threaded kernels slow down when the other core is
    busy, while the pipeline already overlaps decode and inference on separate threads.
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ModelError(
                f"ai-edge-litert is not installed ({e}); pip install ai-edge-litert"
            ) from e
        try:
            # Only while no other thread runs: fd 2 is process-wide, and a model switched
            # during a run must not swallow other threads' messages.
            quiet = threading.active_count() == 1 and not log.isEnabledFor(logging.DEBUG)
            with _native_stderr_silenced(quiet):
                self._interp: Any = Interpreter(model_path=str(path), num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UnsupportedFormatError(
                f"cannot load {path} as a TFLite segmentation model ({e}). Use a MediaPipe "
                "selfie segmentation .tflite file, or `mattecam models verify`."
            ) from e
        inp = self._interp.get_input_details()
        out = self._interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise UnsupportedFormatError(f"{path}: expected one input and one output tensor")
        shape = tuple(int(x) for x in inp[0]["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or inp[0]["dtype"] != np.float32:
            raise UnsupportedFormatError(
                f"{path}: expected a float32 input of shape (1, h, w, 3), got {shape}"
            )
        self.input_size = (shape[2], shape[1])
        self._in_index = int(inp[0]["index"])
        self._out_index = int(out[0]["index"])
        log.debug("loaded %s, input %dx%d", path, *self.input_size)

    def run(self, tensor: NDArray[np.float32]) -> Alpha:
        self._interp.set_tensor(self._in_index, tensor)
        self._interp.invoke()
        w, h = self.input_size
        out = self._interp.get_tensor(self._out_index)
        return np.asarray(out, dtype=np.float32).reshape(h, w)

    def close(self) -> None:
        self._interp = None


@contextlib.contextmanager
def _native_stderr_silenced(active: bool) -> Iterator[None]:
    """Hide what the C++ runtime prints straight to fd 2 while loading ("INFO: Created
    TensorFlow Lite XNNPACK delegate"), which would clutter the CLI. Load errors still arrive
    as exceptions."""
    if not active:
        yield
        return
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # stderr closed or gone: nothing to protect, and logging must not fail
        yield
        return
    try:
        with Path(os.devnull).open("wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
