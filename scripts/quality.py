"""Reproduce the matte quality table in docs/quality.md.

Runs ``mattecam eval`` for the raw model output (whole frame, bilinear enlargement, no
temporal smoothing), for the refinement on the whole frame and for the default (refinement
with the model run on a crop around the person), with both models, on the portrait sets and the
ground-truth clips, and prints a Markdown table:

    .venv/bin/python scripts/quality.py [--data ../shared/data] > /tmp/quality.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "raw": ["--refine", "bilinear", "--no-temporal", "--no-crop"],
    "refined, whole frame": ["--no-crop"],
    "refined + crop (default)": [],
}


def evaluate(args: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "mattecam", "eval", *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ns = p.parse_args()
    jobs: list[tuple[str, list[str]]] = []
    manifest = ns.data / "portraits" / "manifest.csv"
    for subset in ("eg1800_train", "hsd_pseudo"):
        jobs.append((f"portraits {subset}", ["--manifest", str(manifest), "--set", subset]))
    for clip in sorted((ns.data / "videos" / "gt").iterdir()):
        jobs.append((f"clip {clip.name}", ["--clip", str(clip)]))
    print("| data | model | matte | n | IoU | boundary F | MAE | flicker | refine ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in ("general", "landscape"):
        for label, args in jobs:
            for name, extra in CONFIGS.items():
                r = evaluate([*args, "--model", model, *extra])
                flicker = r.get("flicker")
                fl = f"{flicker:.4f}" if isinstance(flicker, float) else "-"
                print(
                    f"| {label} | {model} | {name} | {r['n']} | {r['iou']:.4f} | "
                    f"{r['boundary_f']:.4f} | {r['mae']:.4f} | {fl} | "
                    f"{r['ms_per_frame']:.2f} at {r['size']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
