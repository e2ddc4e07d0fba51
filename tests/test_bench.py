"""``mattecam bench`` runs the real pipeline and reports every figure the issue asks for."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_clip


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_bench_reports_all_figures(codec: str, model_cache: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mattecam",
            "bench",
            "--size",
            "320x180",
            "--frames",
            "40",
            "--live-seconds",
            "2.5",
            "--codec",
            codec,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
    # A growth over ~1.5 s, in MB: finite (both samples taken), and a difference, not the
    # process's whole RSS (~100 MB). Leaks are the soak test's job.
    assert math.isfinite(live["rss_growth_mb"]) and abs(live["rss_growth_mb"]) < 64, live
    assert 30 < report["peak_rss_mb"] < 4000, report["peak_rss_mb"]
    # The named threads' CPU is part of the process's (and the process thread does most).
    by_thread = live["cpu_percent_by_thread"]
    assert set(by_thread) == {"capture", "process", "output"}, by_thread
    assert all(v >= 0 for v in by_thread.values())
    assert sum(by_thread.values()) <= live["cpu_percent"] + 5


def test_bench_soak_runs_the_frames_asked_and_measures_growth(model_cache: Path) -> None:
    """``--soak N`` plays N frames and reports the RSS growth after its 500-frame warm-up."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mattecam",
            "bench",
            "--size",
            "320x180",
            "--frames",
            "20",
            "--no-batch",
            "--no-live",
            "--soak",
            "800",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    (res,) = json.loads(r.stdout)["results"]
    soak = res["soak"]
    assert soak["frames"] == 800, soak
    assert soak["seconds"] > 0
    for key in ("rss_after_warmup_mb", "rss_end_mb", "rss_growth_mb"):
        assert math.isfinite(soak[key]), (key, soak)  # NaN: the warm-up sample was missed
    assert 30 < soak["rss_after_warmup_mb"] < 4000 and 30 < soak["rss_end_mb"] < 4000, soak
    growth = soak["rss_end_mb"] - soak["rss_after_warmup_mb"]
    assert soak["rss_growth_mb"] == pytest.approx(growth, abs=1), soak
    # 300 frames after the warm-up: keeping each 320x180 frame would add ~50 MB; the
    # allocator's own ups and downs are a few MB.
    assert abs(soak["rss_growth_mb"]) < 32, soak


def test_bench_table_with_an_input_clip(tmp_path: Path, model_cache: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", n=10)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mattecam",
            "bench",
            "--input",
            str(clip),
            "--size",
            "160x96",
            "--frames",
            "25",
            "--no-live",
            "-b",
            "blur",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "160x96 (25 frames, input 0 MB in memory)" in r.stdout
    assert "batch throughput" in r.stdout
    assert "inference" in r.stdout
