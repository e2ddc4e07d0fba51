"""Mask refinement: from the model's low-resolution soft mask to a full-resolution matte."""

from __future__ import annotations

from collections.abc import Callable

from mattecam.errors import ConfigError
from mattecam.matte.base import Matte, Refiner
from mattecam.matte.guided import GuidedRefiner
from mattecam.matte.temporal import TemporalRefiner
from mattecam.matte.upsample import BilinearRefiner


def _guided(radius: int, eps: float, work_height: int | None) -> Refiner:
    return GuidedRefiner(radius=radius, eps=eps, work_height=work_height)


def _bilinear(radius: int, eps: float, work_height: int | None) -> Refiner:
    return BilinearRefiner()


#: Refinement name (``--refine``) -> factory (radius, eps, work height). The first is the
#: default; a new refinement is a :class:`Refiner` and one entry here.
REFINERS: dict[str, Callable[[int, float, int | None], Refiner]] = {
    "guided": _guided,
    "bilinear": _bilinear,
}


def make_refiner(
    kind: str = "guided",
    *,
    temporal: bool = True,
    radius: int = 2,
    eps: float = 1e-3,
    work_height: int | None = None,
) -> Refiner:
    """The refinement chain: optional temporal smoothing, then ``kind``'s upsampling.

    Raises:
        ConfigError: an unknown kind (the message lists the known ones).
    """
    factory = REFINERS.get(kind)
    if factory is None:
        raise ConfigError(f"unknown refinement {kind!r}; use one of {', '.join(REFINERS)}.")
    inner = factory(radius, eps, work_height)
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
