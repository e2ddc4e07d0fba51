"""Run every stage of a frame in one thread (no pipeline) to get the single-thread figure.

.venv/bin/python scripts/single_thread.py 1280x720 [CLIP]   # CLIP: as ``bench --input``
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2

from mattecam.bench import BenchOptions, input_frames, make_processor
from mattecam.frame import Frame
from mattecam.sinks import Converter, pixel_format
from mattecam.sources.mjpeg import decode_jpeg, encode_jpeg


def main() -> None:
    w, h = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "1280x720").split("x"))
    cv2.setNumThreads(1)
    clip = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    opts = BenchOptions(input=clip, sizes=[(w, h)], frames=200)
    frames, _ = input_frames(opts, (w, h))
    jpegs = [encode_jpeg(f) for f in frames]
    proc = make_processor(opts, (w, h))
    conv = Converter(pixel_format("yuyv"), w, h)
    per_frame = []
    for rep in range(2):
        for i, j in enumerate(jpegs):
            t = time.perf_counter()
            out = proc.process(Frame(decode_jpeg(j), i, time.monotonic()))
            conv.convert(out.image)
            if rep:
                per_frame.append((time.perf_counter() - t) * 1e3)
    ms = statistics.median(per_frame)
    print(f"{w}x{h} single thread: {ms:.2f} ms per frame = {1000 / ms:.1f} fps")


if __name__ == "__main__":
    main()
