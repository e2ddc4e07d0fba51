"""Mask refinement: from the model's low-resolution soft mask to a full-resolution matte."""

from mattecam.matte.base import Matte, Refiner
from mattecam.matte.upsample import BilinearRefiner

__all__ = ["BilinearRefiner", "Matte", "Refiner"]
