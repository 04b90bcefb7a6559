"""The data layer: every dataset through one function, split by a documented, leak-free protocol.

Public API:
    ``load_dataset(name, anomaly_class, seed=0, *, data_dir=None, image_size=None, scale=False,
    max_train=None, verbose=True) -> Splits``: train (normals only), validation and test splits, labels
    int64 with 1 = anomaly, images float32 (N, C, H, W) in [-1, 1], tabular float32 (N, D).
    ``list_datasets()``: ``cifar10``, ``fashion-mnist``, ``kdd99``, ``mnist``, ``mnist-5k``,
    ``synthetic-images``, ``synthetic-tabular``.
    ``dataset_classes(name)``, ``dataset_kind(name)``: class names / ``"image"`` or ``"tabular"``, no loading.
    ``dataset_available(name, data_dir=None)``: whether the files are at hand locally (no download tried);
    e.g. ``"mnist" if dataset_available("mnist") else "mnist-5k"``.
    ``split_indices(name, anomaly_class, seed, ...)``: the protocol's indices into the source arrays.
    ``prepare_input(x, info)``: raw user input -> model space, ``info`` = ``DatasetInfo.to_dict()``.
    ``prepare_file(path, info)``: the same from a file: ``.npy`` for any dataset, ``.csv`` (gz or plain) of
    raw rows for tabular ones (KDD99 rows are encoded straight from the file, fast for large files).
    ``read_kdd_csv_rows(path)`` (alias ``read_kdd_csv``): a KDD99 CSV as raw rows, object array (N, 41) or
    (N, 42) of strings, for ``prepare_input`` (small files; ``prepare_file`` for large ones).

Modules: ``formats`` (IDX, CIFAR pickles with a restricted unpickler), ``kdd`` (CSV + 121-column schema),
``sources`` (where files are found, downloads), ``images`` (image loaders, scaling, resizing), ``synthetic``,
``protocol`` (split arithmetic), ``datasets`` (catalogue, ``load_dataset``), ``prepare``.
The protocol, sources and encodings are described in docs/protocol.md.
"""

from adgan.data.datasets import (
    DATASETS,
    dataset_available,
    dataset_classes,
    dataset_kind,
    list_datasets,
    load_dataset,
    split_indices,
)
from adgan.data.kdd import read_kdd_csv_rows
from adgan.data.prepare import prepare_file, prepare_input
from adgan.data.protocol import SplitIndices
from adgan.data.types import DatasetInfo, Split, Splits

read_kdd_csv = read_kdd_csv_rows  # alias: the name adgan.cli imports

__all__ = [
    "DATASETS", "DatasetInfo", "Split", "SplitIndices", "Splits", "dataset_available", "dataset_classes",
    "dataset_kind", "list_datasets", "load_dataset", "prepare_file", "prepare_input", "read_kdd_csv",
    "read_kdd_csv_rows", "split_indices",
]
