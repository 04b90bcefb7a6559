"""Turn a user's raw input into model space exactly as the training data was prepared.

``info`` is ``DatasetInfo.to_dict()`` as stored with a checkpoint; its ``preprocessing`` holds the facts used
here (image size and channels; the KDD99 column schema; min-max parameters when scaling was on), so a
checkpoint keeps working even if the package's constants change later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data import kdd
from adgan.data.datasets import minmax_apply
from adgan.data.images import resize, to_model_space
from adgan.errors import DataError


def prepare_input(x: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Prepare raw input ``x`` for a model trained on the dataset described by ``info``.

    Images (``info["kind"] == "image"``), model shape (C, S, S):
        - integer pixels 0..255 (uint8 or any integer dtype), (N, H, W) when C == 1, (N, C, H, W) or
          (N, H, W, C), with H == W == S or the dataset's native size -> scaled to [-1, 1] and resized to S;
        - floats already in [-1, 1], same layouts -> resized to S when needed, otherwise passed through.
    Tabular, KDD99 schema: raw rows (N, 41) (or (N, 42), the label last and ignored) of strings or
        objects, as from ``read_kdd_csv_rows`` -> the one-hot columns (+ the stored min-max scaling);
        numeric (N, 121) is taken as already in model space and passed through.
    Tabular, plain features: numeric (N, D) raw features -> float32 (+ the stored min-max scaling).

    Returns:
        float32 (N, C, S, S) or (N, D).

    Raises:
        DataError: Wrong shape or channels (saying expected vs got), non-numeric or non-finite values,
            pixel values outside 0..255 or floats outside [-1, 1], unknown KDD99 categories.
    """
    if info.get("kind") == "image":
        return _prepare_images(np.asarray(x), info)
    if info.get("kind") == "tabular":
        return _prepare_tabular(np.asarray(x), info)
    raise DataError(f"dataset info: unknown kind {info.get('kind')!r}, expected 'image' or 'tabular'")


def _prepare_images(x: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    prep = info["preprocessing"]
    c, size = int(prep["channels"]), int(prep["image_size"])
    sizes = {size, int(prep.get("native_size", size))}
    expected = f"(N, {c}, H, W) or (N, H, W, {c})" + (" or (N, H, W)" if c == 1 else "") + \
        f" with H == W in {sorted(sizes)}"
    if x.ndim == 3 and c == 1:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] != c and x.shape[3] == c:
        x = np.moveaxis(x, 3, 1)
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] != c or x.shape[2] != x.shape[3] \
            or x.shape[2] not in sizes:
        raise DataError(f"input: expected {c}-channel images {expected} for this {info.get('name', '')} "
                        f"model, got shape {tuple(x.shape)}")
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"input: integer pixels must be in 0..255, got {x.min()}..{x.max()}")
        return to_model_space(x.astype(np.uint8), size)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"input: expected uint8 pixels or floats in [-1, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError("input: images contain NaN or infinite values")
    if x.min() < -1.0 or x.max() > 1.0:
        raise DataError(f"input: float images must already be in [-1, 1] (model space), got "
                        f"{x.min():.4g}..{x.max():.4g}; pass uint8 0..255 for raw pixels")
    return resize(np.ascontiguousarray(x, dtype=np.float32), size)


def _scaled(x: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    if prep.get("scale"):
        return minmax_apply(x, prep["scale_min"], prep["scale_max"])
    return x.astype(np.float32, copy=False)


def _prepare_tabular(x: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    prep = info["preprocessing"]
    d = int(info["input_shape"][0])
    if prep.get("format") == "kdd99":
        if x.ndim == 2 and x.shape[1] == d and np.issubdtype(x.dtype, np.number):
            return _finite(x.astype(np.float32), "input")
        rows = kdd.rows_from_array(x, kdd.KddSchema.from_dict(prep))
        return _scaled(kdd.encode(rows, kdd.KddSchema.from_dict(prep)), prep)
    if x.ndim != 2 or x.shape[1] != d:
        raise DataError(f"input: expected rows of shape (N, {d}), got {tuple(x.shape)}")
    try:
        xf = x.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"input: expected numeric features, got dtype {x.dtype}") from None
    return _scaled(_finite(xf, "input"), prep)


def _finite(x: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise DataError(f"{where}: row {i + 1}, column {j}: value {x[i, j]} is not finite")
    return x


def prepare_file(path: str | os.PathLike[str], info: dict[str, Any]) -> np.ndarray:
    """Read ``path`` and prepare it like ``prepare_input``.

    ``.npy`` (numpy arrays, no pickles) for any dataset; ``.csv``/``.csv.gz``/``.gz`` rows for tabular
    datasets: KDD99 raw rows (41 features, optional label) are parsed and encoded straight from the file
    (fast, no per-cell Python objects), plain datasets read as numeric CSV without header.
    """
    path = Path(path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            # numpy reports any file that is not .npy as "pickled data": say what was expected instead.
            raise DataError(f"{path}: not a numeric .npy array written by numpy.save ({exc})") from None
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise DataError(f"{path}: holds no samples (shape {arr.shape}); expected N >= 1 rows or images")
    else:
        if info.get("kind") != "tabular":
            raise DataError(f"{path}: image input must be a .npy array, got {path.suffix or 'no suffix'!r}")
        prep = info["preprocessing"]
        if prep.get("format") == "kdd99":
            schema = kdd.KddSchema.from_dict(prep)
            return _scaled(kdd.encode(kdd.read_kdd_file(path, schema, require_label=False), schema), prep)
        try:
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: expected a numeric CSV without header ({exc})") from None
    try:
        return prepare_input(arr, info)
    except DataError as exc:  # name the file instead of "input"
        raise DataError(f"{path}: {str(exc).removeprefix('input: ')}") from None
