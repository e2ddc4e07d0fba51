"""``mattecam bench`` runs the real pipeline and reports every figure the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_clip


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_bench_reports_all_figures(codec: str, model_cache: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mattecam", "bench", "--size", "320x180", "--frames", "40",
         "--live-seconds", "2.5", "--codec", codec, "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (res,) = report["results"]
    assert res["size"] == "320x180"
    for stage in ("decode", "preprocess", "inference", "refine", "composite", "convert", "write"):
        assert res["stages"][stage]["median_ms"] > 0, stage
        assert res["stages"][stage]["p95_ms"] >= res["stages"][stage]["median_ms"]
    assert res["batch_fps"] > 5
    live = res["live"]
    assert 0 < live["cpu_percent"] < 200
    assert live["latency_p50_ms"] <= live["latency_p95_ms"] <= live["latency_p99_ms"]
    assert live["frames_written"] > 30
    assert "rss_growth_mb" in live and report["peak_rss_mb"] > 0
    # The named threads' CPU is part of the process's (and the process thread does most).
    by_thread = live["cpu_percent_by_thread"]
    assert set(by_thread) == {"capture", "process", "output"}, by_thread
    assert all(v >= 0 for v in by_thread.values())
    assert sum(by_thread.values()) <= live["cpu_percent"] + 5


def test_bench_table_with_an_input_clip(tmp_path: Path, model_cache: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=10)
    r = subprocess.run(
        [sys.executable, "-m", "mattecam", "bench", "--input", str(clip), "--size", "160x96",
         "--frames", "25", "--no-live", "-b", "blur"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "160x96 (25 frames, input 0 MB in memory)" in r.stdout
    assert "batch throughput" in r.stdout
    assert "inference" in r.stdout
