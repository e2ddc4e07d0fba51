"""``mattecam eval``: score the model plus refinement on labelled images or clips."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mattecam.errors import InputNotFoundError, UnsupportedFormatError
from mattecam.evaluation.metrics import MetricAccumulator
from mattecam.imaging.yuv import I420, Picture, picture_size
from mattecam.matte.stage import MatteStage


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled frame: a picture (a BGR image, or a video frame's I420) and its 8-bit
    mask (255 = person)."""

    name: str
    image: Picture
    mask: np.ndarray


def manifest_samples(
    path: Path, *, subset: str | None = None, limit: int | None = None
) -> Iterator[Sample]:
    """The images and masks listed in a manifest CSV (``name,image,mask`` columns, paths
    relative to the manifest), optionally only rows whose ``set`` column is ``subset``."""
    if not path.is_file():
        raise InputNotFoundError(f"manifest {path} does not exist.")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"name", "image", "mask"} - set(reader.fieldnames or ())
        if missing:
            raise UnsupportedFormatError(
                f"{path} lacks the column(s) {', '.join(sorted(missing))}; a manifest needs "
                "name,image,mask."
            )
        rows = [r for r in reader if subset is None or r.get("set") == subset]
    for row in rows[:limit]:
        image = _imread(path.parent / row["image"], cv2.IMREAD_COLOR)
        mask = _imread(path.parent / row["mask"], cv2.IMREAD_GRAYSCALE)
        if mask.shape != image.shape[:2]:
            raise UnsupportedFormatError(f"{row['name']}: mask and image sizes differ")
        yield Sample(row["name"], image, mask)


def clip_samples(directory: Path, *, limit: int | None = None) -> Iterator[Sample]:
    """Frames of ``DIR/<DIR name>.mp4`` with ``DIR/masks/00000.png``, ... in order."""
    from mattecam.sources.file import FileSource

    video = directory / f"{directory.name}.mp4"
    if not video.is_file():
        raise InputNotFoundError(f"clip {video} does not exist (expected DIR/<DIR name>.mp4).")
    with FileSource(video) as src:
        i = 0
        while (limit is None or i < limit) and (frame := src.read()) is not None:
            mask_path = directory / "masks" / f"{i:05d}.png"
            if not mask_path.is_file():
                break
            yield Sample(f"{directory.name}/{i:05d}", frame.image, _imread(mask_path, 0))
            i += 1


def _imread(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputNotFoundError(f"cannot read {path}.")
    return np.asarray(image)


def evaluate(
    samples: Iterator[Sample], matting: MatteStage, *, temporal: bool
) -> dict[str, float | int | str | None]:
    """Run every sample through the matte stage exactly as the live pipeline does (in
    order, keeping temporal and framing state when ``temporal``; a still image is located
    first, then segmented on its crop) and summarise the metrics, with median milliseconds
    per stage."""
    acc = MetricAccumulator(temporal=temporal)
    infer_ms: list[float] = []
    refine_ms: list[float] = []
    size = (0, 0)
    for s in samples:
        if not temporal:
            matting.reset()
        timings: dict[str, float] = {}
        size = picture_size(s.image)
        matte = matting.matte(_even(s.image), timings)[: size[1], : size[0]]
        infer_ms.append(timings["preprocess"] + timings["inference"])
        refine_ms.append(timings["refine"])
        acc.add(matte, s.mask)
    summary: dict[str, float | int | str | None] = dict(acc.summary())
    summary["ms_per_frame"] = statistics.median(refine_ms) if refine_ms else None
    summary["inference_ms"] = statistics.median(infer_ms) if infer_ms else None
    summary["size"] = f"{size[0]}x{size[1]}"
    return summary


def _even(image: Picture) -> I420:
    """The picture as the pipeline sees it (I420); a BGR image with an odd side is padded
    by repeating its last column or row (I420 needs even sides), and the matte is cropped
    back by the caller."""
    if isinstance(image, I420):
        return image.limited()
    h, w = image.shape[:2]
    padded = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    return I420.from_bgr(np.asarray(padded, np.uint8))
