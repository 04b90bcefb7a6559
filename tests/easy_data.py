"""The synthetic data every model test trains on: easy images and tables, and the models' fast settings.

Anomalies are easy to tell apart for a model that has learnt the normal data and indistinguishable for an
untrained one (scores at chance), so a test can check that training did something.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adgan.models import DETECTORS

TAB_DIM = 20


def easy_images(
    n: int, anomaly: np.ndarray, rng: np.random.Generator, side: int = 32, channels: int = 1
) -> np.ndarray:
    """Normal: one smooth Gaussian blob at a random place. Anomaly: a checkerboard of random cell size/phase.

    Args:
        n: Number of images.
        anomaly: (n,) bool, which images are anomalous.
        rng: Random source.
        side: Image side (28 or 32).
        channels: Channels (the pattern is repeated over them).

    Returns:
        (n, channels, side, side) float32 in [-1, 1], with Gaussian pixel noise (sd 0.1).
    """
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    centre = rng.uniform(side / 4, 3 * side / 4, (n, 2, 1, 1))
    width = rng.uniform(3.0, 5.0, (n, 1, 1))
    blob = 2 * np.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / (2 * width**2)) - 1
    cell = rng.integers(3, 6, (n, 1, 1))
    shift = rng.integers(0, 6, (n, 2, 1, 1))
    check = np.where((((yy + shift[:, 0]) // cell + (xx + shift[:, 1]) // cell) % 2) == 0, 0.8, -0.8)
    img = np.where(anomaly[:, None, None], check, blob)
    x = np.repeat(img[:, None], channels, axis=1) + 0.1 * rng.standard_normal((n, channels, side, side))
    return np.clip(x, -1, 1).astype(np.float32)


def easy_tabular(n: int, anomaly: np.ndarray, rng: np.random.Generator, dim: int = TAB_DIM) -> np.ndarray:
    """Normal: points near a fixed 3-d linear subspace of R^dim (per-feature sd about 1). Anomaly: isotropic
    Gaussian points with sd 3, off the subspace and farther out.

    Returns:
        (n, dim) float32.
    """
    basis = np.random.default_rng(12345).standard_normal((3, dim)) / math.sqrt(3)
    normal = rng.standard_normal((n, 3)) @ basis + 0.05 * rng.standard_normal((n, dim))
    outlier = 3.0 * rng.standard_normal((n, dim))
    return np.where(anomaly[:, None], outlier, normal).astype(np.float32)


def easy_split(kind: str, side: int = 32, channels: int = 1, n_train: int = 0, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_train normals only, x_test, y_test) with 200 normal and 100 anomalous test samples.

    ``n_train`` 0 means 512 images or 2048 table rows (tabular steps are cheap; more of them let the
    small networks of ``tiny_config`` learn the manifold in two epochs).
    """
    rng = np.random.default_rng(seed)
    n_train = n_train or (512 if kind == "image" else 2048)
    y = np.r_[np.zeros(200), np.ones(100)].astype(np.int64)
    if kind == "image":
        return (easy_images(n_train, np.zeros(n_train, bool), rng, side, channels),
                easy_images(len(y), y.astype(bool), rng, side, channels), y)
    return easy_tabular(n_train, np.zeros(n_train, bool), rng), easy_tabular(len(y), y.astype(bool), rng), y


def images(n_normal: int, n_anomaly: int, seed: int, side: int = 28, channels: int = 1
           ) -> tuple[np.ndarray, np.ndarray]:
    """``n_normal`` then ``n_anomaly`` easy images (``easy_images``) and their labels int64 (1 = anomaly)."""
    y = np.r_[np.zeros(n_normal, np.int64), np.ones(n_anomaly, np.int64)]
    return easy_images(len(y), y.astype(bool), np.random.default_rng(seed), side, channels), y


def tiny(name: str) -> dict[str, Any]:
    """The detector's ``tiny_config()`` hook, or ``{}``."""
    hook = getattr(DETECTORS.get(name), "tiny_config", None)
    return dict(hook()) if callable(hook) else {}
