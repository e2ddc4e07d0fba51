"""Refinement from model resolution to the frame."""

from __future__ import annotations

import numpy as np

from mattecam.matte import BilinearRefiner


def test_bilinear_refine_keeps_soft_values_and_size() -> None:
    alpha = np.zeros((144, 256), np.float32)
    alpha[:, 128:] = 1.0
    alpha[:, 127] = 0.5
    frame = np.zeros((720, 1280, 3), np.uint8)
    matte = BilinearRefiner().refine(alpha, frame)
    assert matte.shape == (720, 1280)
    assert matte.dtype == np.uint8
    assert matte[:, :600].max() == 0
    assert matte[:, 660:].min() == 255
    soft = matte[360, 600:660]
    assert np.any((soft > 0) & (soft < 255))
    assert np.all(np.diff(soft.astype(int)) >= 0)  # monotonic ramp across the edge


def test_constant_alpha_maps_to_constant_matte() -> None:
    alpha = np.full((144, 256), 0.25, np.float32)
    matte = BilinearRefiner().refine(alpha, np.zeros((480, 854, 3), np.uint8))
    assert set(np.unique(matte)) == {64}
