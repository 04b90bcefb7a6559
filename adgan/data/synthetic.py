"""Two small deterministic datasets generated in memory, for tests and smoke sweeps.

- ``synthetic-images``: 1x28x28 uint8 images, five classes of clearly different patterns (horizontal stripes,
  vertical stripes, a checkerboard, a filled disk, a ring) with random phase, period, position and pixel
  noise; 300 images per class. Any class can be the anomalous one, as with MNIST.
- ``synthetic-tabular``: (N, 8) float32, 1,600 normals from two Gaussian clusters (centres -2 and +2 on
  every axis, unit variance) and 400 anomalies on a shell of radius 8 to 10 around the origin, at least 6
  from both centres.
  One class, index 0 = ``"outlier"``.

Both come from a fixed generator seed (not the split seed), so their content never changes; the split
protocols are the same code as for the real datasets.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

GENERATOR_SEED = 20180101
IMAGE_CLASSES: tuple[str, ...] = ("hstripes", "vstripes", "checker", "disk", "ring")
TABULAR_CLASSES: tuple[str, ...] = ("outlier",)
PER_CLASS = 300
N_NORMAL, N_ANOMALY, N_FEATURES = 1600, 400, 8


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def synthetic_images() -> tuple[np.ndarray, np.ndarray, str]:
    """Generate the images.

    Returns:
        ``(images, labels, sha256)``: uint8 (1500, 1, 28, 28), int64 (1500,) in 0..4, digest of both.
    """
    rng = np.random.default_rng(GENERATOR_SEED)
    n = PER_CLASS
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    yy, xx = yy[None], xx[None]

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, 1, 1))

    period, phase = u(5, 8), u(0, 2 * np.pi)
    hstripes = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    period, phase = u(5, 8), u(0, 2 * np.pi)
    vstripes = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
    period, px, py = u(6, 9), u(0, 2 * np.pi), u(0, 2 * np.pi)
    checker = (np.sin(2 * np.pi * xx / period + px) * np.sin(2 * np.pi * yy / period + py) > 0).astype(float)
    cy, cx, r = u(11, 17), u(11, 17), u(6, 10)
    disk = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r**2).astype(float)
    cy, cx, r = u(12, 16), u(12, 16), u(7, 11)
    ring = (np.abs(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r) <= 1.5).astype(float)
    clean = np.concatenate([hstripes, vstripes, checker, disk, ring])
    noisy = np.clip(clean + rng.normal(0.0, 0.08, size=clean.shape), 0.0, 1.0)
    images = np.round(noisy * 255).astype(np.uint8)[:, None]
    labels = np.repeat(np.arange(len(IMAGE_CLASSES), dtype=np.int64), n)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels, _digest(images, labels)


@functools.lru_cache(maxsize=1)
def synthetic_tabular() -> tuple[np.ndarray, np.ndarray, str]:
    """Generate the tabular data.

    Returns:
        ``(x, is_anomaly, sha256)``: float32 (2000, 8), bool (2000,), digest of both; rows are shuffled.
    """
    rng = np.random.default_rng(GENERATOR_SEED)
    centres = np.where(rng.random(N_NORMAL) < 0.5, -2.0, 2.0)[:, None]
    normals = centres + rng.normal(size=(N_NORMAL, N_FEATURES))
    # Anomalies: a shell of radius 8..10, keeping only points at least 6 from both centres (rejection).
    direction = rng.normal(size=(8 * N_ANOMALY, N_FEATURES))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    shell = direction * rng.uniform(8.0, 10.0, size=(8 * N_ANOMALY, 1))
    far = np.minimum(np.linalg.norm(shell - 2.0, axis=1), np.linalg.norm(shell + 2.0, axis=1)) >= 6.0
    anomalies = shell[far][:N_ANOMALY]
    x = np.concatenate([normals, anomalies]).astype(np.float32)
    is_anomaly = np.concatenate([np.zeros(N_NORMAL, bool), np.ones(N_ANOMALY, bool)])
    order = rng.permutation(x.shape[0])
    x, is_anomaly = x[order], is_anomaly[order]
    x.flags.writeable = False
    is_anomaly.flags.writeable = False
    return x, is_anomaly, _digest(x, is_anomaly)
