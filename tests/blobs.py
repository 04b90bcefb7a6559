"""Easy synthetic images shared by the GAN tests."""

from __future__ import annotations

import numpy as np


def blob_images(n_normal: int, n_anomaly: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1x28x28 images in [-1, 1]: normals hold one 6x6 bright square, anomalies one 14x14 square.

    An untrained model scores them at chance (AUROC ~0.5): telling them apart needs a generator that
    has learnt the dark background and the small square.
    """
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomaly, np.int64)]
    side = np.where(y == 1, 14, 6)
    top, left = rng.integers(0, 29 - side), rng.integers(0, 29 - side)
    idx = np.arange(28)
    rows = (idx[None] >= top[:, None]) & (idx[None] < (top + side)[:, None])
    cols = (idx[None] >= left[:, None]) & (idx[None] < (left + side)[:, None])
    x = np.where(rows[:, None, :, None] & cols[:, None, None, :], 1.0, -1.0).astype(np.float32)
    x += rng.normal(0.0, 0.1, x.shape).astype(np.float32)
    return np.clip(x, -1.0, 1.0), y
