"""Run every stage of a frame in one thread (no pipeline) to get the single-thread figure.

.venv/bin/python scripts/single_thread.py 1280x720 [CLIP]   # CLIP: as ``bench --input``

Prints the median wall time per frame back to back, and the median CPU time per frame when
the frames come paced at 30 fps, as a camera's do (each then starts with cold caches); the
latter against ``bench``'s live CPU tells what the pipeline's threads and clock cost.
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
    jpegs = [encode_jpeg(f, 85, "444") for f in frames]  # as bench (--chroma 444)
    proc = make_processor(opts, (w, h))
    conv = Converter(pixel_format("yuyv"), w, h)

    def one(i: int) -> None:
        out = proc.process(Frame(decode_jpeg(jpegs[i]), i, time.monotonic()))
        conv.convert(out.image)

    wall = []
    for rep in range(2):
        for i in range(len(jpegs)):
            t = time.perf_counter()
            one(i)
            if rep:
                wall.append((time.perf_counter() - t) * 1e3)
    cpu = []
    start = time.monotonic()
    for i in range(len(jpegs)):
        delay = start + i / 30.0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.thread_time()
        one(i)
        cpu.append((time.thread_time() - t) * 1e3)
    ms, paced = statistics.median(wall), statistics.median(cpu)
    print(f"{w}x{h} single thread: {ms:.2f} ms per frame = {1000 / ms:.1f} fps back to back;")
    print(f"  paced at 30 fps: {paced:.2f} ms CPU per frame = {paced * 3:.1f} % of one core")


if __name__ == "__main__":
    main()
