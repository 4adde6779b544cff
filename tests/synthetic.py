"""Small synthetic volumes for tests and benchmarks (the full phantoms live in viewer.phantoms)."""

from __future__ import annotations

import numpy as np


def head_volume(slices: int, size: int, seed: int = 0) -> np.ndarray:
    """An axial head-like volume in HU: air, a skull shell, brain, ventricles and CT noise."""
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, slices)[:, None, None]
    y = np.linspace(-1, 1, size)[None, :, None]
    x = np.linspace(-1, 1, size)[None, None, :]
    head = (x / 0.75) ** 2 + (y / 0.9) ** 2 + (z / 1.1) ** 2
    brain = (x / 0.68) ** 2 + (y / 0.83) ** 2 + (z / 1.0) ** 2
    ventricles = ((np.abs(x) - 0.12) / 0.08) ** 2 + (y / 0.3) ** 2 + (z / 0.4) ** 2
    hu = np.full((slices, size, size), -1000.0, np.float32)
    hu[np.broadcast_to(head <= 1, hu.shape)] = 1200.0
    hu[np.broadcast_to(brain <= 1, hu.shape)] = 35.0
    hu[np.broadcast_to(ventricles <= 1, hu.shape)] = 5.0
    hu += rng.normal(0, 4, hu.shape).astype(np.float32)
    return np.rint(hu)
