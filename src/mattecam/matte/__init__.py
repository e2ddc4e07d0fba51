"""Mask refinement: from the model's low-resolution soft mask to a full-resolution matte."""

from __future__ import annotations

from mattecam.errors import ConfigError
from mattecam.matte.base import Matte, Refiner
from mattecam.matte.guided import GuidedRefiner
from mattecam.matte.temporal import TemporalRefiner
from mattecam.matte.upsample import BilinearRefiner

REFINERS = ("guided", "bilinear")


def make_refiner(
    kind: str = "guided",
    *,
    temporal: bool = True,
    radius: int = 2,
    eps: float = 1e-3,
    work_height: int | None = None,
) -> Refiner:
    """The refinement chain: optional temporal smoothing, then ``guided`` or ``bilinear``
    upsampling."""
    inner: Refiner
    if kind == "guided":
        inner = GuidedRefiner(radius=radius, eps=eps, work_height=work_height)
    elif kind == "bilinear":
        inner = BilinearRefiner()
    else:
        raise ConfigError(f"unknown refinement {kind!r}; use one of {', '.join(REFINERS)}.")
    return TemporalRefiner(inner) if temporal else inner


__all__ = [
    "REFINERS",
    "BilinearRefiner",
    "GuidedRefiner",
    "Matte",
    "Refiner",
    "TemporalRefiner",
    "make_refiner",
]
