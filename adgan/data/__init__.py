"""The data layer: every dataset through one function, split by a documented, leak-free protocol.

Public API:
    ``load_dataset(name, anomaly_class, seed=0, *, data_dir=None, image_size=None, scale=None,
    max_train=None, verbose=True) -> Splits``: train (normals only), validation and test splits, labels
    int64 with 1 = anomaly, images float32 (N, C, H, W) in [-1, 1], tabular float32 (N, D).
    ``list_datasets()``: ``cifar10``, ``fashion-mnist``, ``kdd99``, ``mnist``, ``mnist-5k``,
    ``synthetic-images``, ``synthetic-tabular``, and the declared datasets registered in this process.
    ``dataset_classes(name)``, ``dataset_kind(name)``: class names / ``"image"`` or ``"tabular"``, no loading
    (a declared dataset lists its class folders or reads only its label column, once).
    ``dataset_available(name, data_dir=None)``: whether the files are at hand locally (no download tried);
    e.g. ``"mnist" if dataset_available("mnist") else "mnist-5k"``.
    ``split_indices(name, anomaly_class, seed, ...)``: the protocol's indices into the source arrays.
    ``prepare_input(x, info, strict=False)``: raw user input -> model space, ``info`` =
    ``DatasetInfo.to_dict()``.
    ``prepare_file(path, info, strict=False)``: the same from a file: ``.npy``/``.npz`` for any dataset, an
    image file or a folder of images for image datasets, ``.csv`` (gz or plain) of raw rows for tabular ones
    (KDD99 rows are encoded straight from the file, fast for large files), CSV/Parquet for declared tables.
    ``prepare_image_folder(path, info) -> (x, paths)``: a folder of images and the row order (sorted
    relative paths). Unseen categories: an ``UnseenCategoryWarning``, or refused with ``strict=True``.
    ``read_kdd_csv_rows(path)``: a KDD99 CSV as raw rows, object array (N, 41) or (N, 42) of strings, for
    ``prepare_input`` (small files; ``prepare_file`` for large ones).

User datasets (docs/protocol.md, "Your own data"):
    ``register_declared(decl) -> name``: register a dataset declared by a JSON-able dict (image folders,
    MVTec-style normal/anomaly folders, ``.npz`` arrays, CSV/Parquet tables), idempotently and lazily.
    ``load_declaration_file(path) -> dict``: a declaration from YAML/JSON (paths relative to the file).
    ``normalize_declaration(decl, base_dir=None) -> dict``, ``resolve_declaration(value, base_dir=None)``.

Modules: ``formats`` (IDX, CIFAR pickles with a restricted unpickler), ``kdd`` (CSV + 121-column schema),
``sources`` (where files are found, downloads), ``images`` (image loaders, scaling, resizing), ``synthetic``,
``protocol`` (split arithmetic), ``datasets`` (catalogue, ``load_dataset``), ``prepare``, ``declared``
(user datasets), ``folders`` (image folders), ``tables`` (CSV/Parquet tables), ``unseen`` (unseen
categories). The protocol, sources and encodings are described in docs/protocol.md.
"""

from adgan.data.datasets import (
    DATASETS,
    class_index,
    dataset_available,
    dataset_classes,
    dataset_kind,
    default_scale,
    list_datasets,
    load_dataset,
    split_indices,
)
from adgan.data.declared import (
    load_declaration_file,
    normalize_declaration,
    register_declared,
    resolve_declaration,
)
from adgan.data.kdd import read_kdd_csv_rows
from adgan.data.prepare import kept_columns, prepare_file, prepare_image_folder, prepare_input
from adgan.data.protocol import SplitFractions, SplitIndices
from adgan.data.types import DatasetInfo, Split, Splits
from adgan.data.unseen import UnseenCategoryWarning

__all__ = [
    "DATASETS", "DatasetInfo", "Split", "SplitFractions", "SplitIndices", "Splits", "UnseenCategoryWarning",
    "class_index", "dataset_available", "dataset_classes", "dataset_kind", "default_scale", "list_datasets",
    "kept_columns", "load_dataset", "load_declaration_file", "normalize_declaration", "prepare_file",
    "prepare_image_folder", "prepare_input",
    "read_kdd_csv_rows", "register_declared", "resolve_declaration", "split_indices",
]
