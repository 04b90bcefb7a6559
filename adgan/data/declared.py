"""User datasets declared by a plain, JSON-able dict: no Python, loadable in any process from the dict alone.

A declaration names the dataset and its files (docs/protocol.md, "Your own data")::

    {"name": "parts", "format": "image-folder", "root": "/data/parts", "channels": 1, "image_size": 28}
    {"name": "bottle", "format": "normal-anomaly-folder", "root": "/data/mvtec/bottle", "channels": 3,
     "image_size": 32}
    {"name": "sensors", "format": "npz", "path": "x.npz", "labels": "class"}
    {"name": "traffic", "format": "table", "path": "t.csv", "label_column": "label",
     "categorical": ["proto", "service"], "labels": "anomaly", "anomaly_values": ["attack"]}

``register_declared(decl)`` validates it (unknown keys and bad values are a ``ConfigError`` naming the key,
the declaration and what was expected), makes relative paths absolute and registers the dataset in
``DATASETS`` under ``decl["name"]`` with a lazy loader: registering reads no file. Registering the same
declaration again does nothing, so a Ray worker registers from the dict in its trial config, then
``load_dataset(name, ...)`` works there as anywhere. ``load_declaration_file(path)`` reads a YAML or JSON
file (relative paths then resolve against its folder).

Protocols: ``"one-class"`` (each class in turn is the anomaly; the pooled protocol, as for MNIST) for
``image-folder`` and for ``npz``/``table`` with ``labels: class``; ``"normal-vs-anomaly"`` (one fixed normal
class, anomalies of one or more types; ``normal-anomaly-v1``) for ``normal-anomaly-folder`` and for
``npz``/``table`` with ``labels: anomaly``. A normal-vs-anomaly dataset has the single class ``"anomaly"``
(``anomaly_class`` 0).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data import folders, tables
from adgan.data.datasets import (
    DATASETS,
    NORMAL_VS_ANOMALY,
    ONE_CLASS,
    PROTOCOLS,
    DatasetSpec,
    RawTabular,
    nfc,
)
from adgan.data.formats import sha256_file
from adgan.data.images import RawImages, pixel_units
from adgan.data.protocol import SplitFractions
from adgan.errors import ConfigError, DataError, InputWarning, did_you_mean

PathLike = str | os.PathLike[str]
FORMATS = ("image-folder", "normal-anomaly-folder", "npz", "table")
NVA_CLASS = "anomaly"  # the one class name of a normal-vs-anomaly dataset
NORMAL_DIR = "good"  # MVTec AD / anomalib: train/good, test/good hold the normal images
DEFAULT_MIN_PER_CLASS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FRACTIONS = ("test_fraction", "val_fraction", "val_anomaly_fraction")

# Keys every declaration may have; then the keys of each format. "!" marks a required key.
_COMMON = ("!name", "!format", "protocol", "classes", "min_per_class", *_FRACTIONS, "description")
_FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "image-folder": ("!root", "!channels", "image_size"),
    "normal-anomaly-folder": ("!root", "!channels", "image_size"),
    "npz": ("!path", "labels", "anomaly_values", "channels", "image_size", "pixel_range"),
    "table": ("!path", "!label_column", "categorical", "drop_columns", "labels", "anomaly_values"),
}


# ----- validation -----
def _fail(where: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {key!r} must be {expected}, got {value!r}")


def _int(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(where, key, f"an integer in {lo}..{hi}", value)
    return int(value)


def _text_list(where: str, key: str, value: Any, scalars: bool = False) -> list[str]:
    """A list of names (or, ``scalars``, of label values) as unique strings."""
    ok = (str, int, float, bool) if scalars else (str,)
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, ok) for v in value):
        raise _fail(where, key, "a non-empty list of " + ("label values" if scalars else "names"), value)
    out = [label_text_of(v) for v in value]
    if len(set(out)) != len(out):
        raise _fail(where, key, "a list without repeated entries", value)
    return out


def label_text_of(value: Any) -> str:
    """A label value as text, as labels are compared: ``1``, ``1.0``, ``True``, ``"1"`` and ``"1.0"`` are
    ``"1"`` (a file's label texts go through ``tables.integer_texts`` alike)."""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return re.sub(tables.INTEGER_TEXT, r"\1", str(value))


def _path(where: str, key: str, value: Any, base_dir: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, key, "a path (text)", value)
    path = Path(value).expanduser()
    # Lexically normalised ("a/../b" -> "b"), so that one dataset declared from two places compares equal.
    return os.path.normpath(path if path.is_absolute() else (base_dir / path).absolute())


def normalize_declaration(decl: Mapping[str, Any], base_dir: PathLike | None = None,
                          where: str | None = None) -> dict[str, Any]:
    """Validate a declaration and return its canonical form (every key, defaults filled, absolute paths).

    Args:
        decl: The declaration (from YAML, JSON or code).
        base_dir: Folder that relative paths resolve against (default: the current directory).
        where: Names the declaration in errors (default: ``dataset declaration '<name>'``).

    Returns:
        A JSON-able dict; two declarations of the same dataset normalise to equal dicts.

    Raises:
        ConfigError: Not a mapping, an unknown key (named, with the keys the format accepts), a missing
            required key, or a value of the wrong type or range (naming what was expected).
    """
    if not isinstance(decl, Mapping):
        raise ConfigError(f"{where or 'dataset declaration'}: expected a mapping of keys (name, format, "
                          f"...), got {type(decl).__name__}")
    name = decl.get("name")
    where = where or f"dataset declaration {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(where, "name", "a name of letters, digits, '.', '_' or '-' (not starting with '.', "
                    "'_' or '-')", name)
    fmt = decl.get("format")
    if fmt not in FORMATS:
        raise _fail(where, "format", f"one of {', '.join(FORMATS)}", fmt)
    allowed = [k.lstrip("!") for k in _COMMON + _FORMAT_KEYS[fmt]]
    for key in decl:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; the format "
                              f"{fmt!r} accepts: {', '.join(allowed)}")
    # An optional key set to None (null) means "not given": a normalised declaration normalises to itself.
    decl = {k: v for k, v in decl.items() if v is not None}
    for key in _COMMON + _FORMAT_KEYS[fmt]:
        if key.startswith("!") and decl.get(key[1:]) is None:
            raise ConfigError(f"{where}: the key {key[1:]!r} is required for format {fmt!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out: dict[str, Any] = {"name": name, "format": fmt}
    if "description" in decl and not isinstance(decl["description"], str):
        raise _fail(where, "description", "text", decl["description"])
    out["description"] = decl.get("description")
    if fmt in ("image-folder", "normal-anomaly-folder"):
        out["root"] = _path(where, "root", decl["root"], base)
    else:
        out["path"] = _path(where, "path", decl["path"], base)
        suffixes = (".npz",) if fmt == "npz" else tables.CSV_SUFFIXES + tables.PARQUET_SUFFIXES
        if not out["path"].lower().endswith(suffixes):
            raise _fail(where, "path", f"a file ending in {', '.join(suffixes)} for format {fmt!r}",
                        decl["path"])
    _format_options(decl, out, fmt, where)
    _labels_and_protocol(decl, out, fmt, where)
    out["min_per_class"] = _int(where, "min_per_class", decl.get("min_per_class", DEFAULT_MIN_PER_CLASS),
                                1, 10**9)
    for key in _FRACTIONS:
        value = decl.get(key, getattr(SplitFractions(), key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise _fail(where, key, "a number strictly between 0 and 1", value)
        out[key] = float(value)
    return out


def _format_options(decl: Mapping[str, Any], out: dict[str, Any], fmt: str, where: str) -> None:
    """Fill the options of the format: image channels and size, the npz pixel range, the table's columns."""
    keys = _FORMAT_KEYS[fmt]
    if "channels" in keys or "!channels" in keys:
        ch = decl.get("channels")
        if ch is not None and (isinstance(ch, bool) or ch not in (1, 3)):
            raise _fail(where, "channels", "1 (grayscale) or 3 (RGB)", ch)
        out["channels"] = ch
    if "image_size" in keys:
        size = decl.get("image_size")
        out["image_size"] = None if size is None else _int(where, "image_size", size, 4, 4096)
    if fmt == "npz":
        pr = decl.get("pixel_range")
        numbers = isinstance(pr, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in pr)
        if pr is not None and not (numbers and len(pr) == 2 and pr[0] < pr[1]):
            raise _fail(where, "pixel_range", "[low, high] with low < high, e.g. [0, 1] or [0, 255]", pr)
        out["pixel_range"] = None if pr is None else [float(pr[0]), float(pr[1])]
    if fmt == "table":
        label = decl["label_column"]
        if not isinstance(label, str) or not label:
            raise _fail(where, "label_column", "a column name", label)
        out["label_column"] = label
        for key in ("categorical", "drop_columns"):
            value = decl.get(key)
            out[key] = [] if value in (None, []) else _text_list(where, key, value)
            if label in out[key]:
                raise ConfigError(f"{where}: {key!r} lists the label column {label!r}")
        both = set(out["categorical"]) & set(out["drop_columns"])
        if both:
            raise ConfigError(f"{where}: column {sorted(both)[0]!r} is both in 'categorical' and "
                              "'drop_columns'")


def _labels_and_protocol(decl: Mapping[str, Any], out: dict[str, Any], fmt: str, where: str) -> None:
    """Fill ``labels``, ``anomaly_values``, ``protocol`` and ``classes``, checking they agree."""
    protocol = decl.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise _fail(where, "protocol", f"one of {', '.join(PROTOCOLS)}", protocol)
    if fmt in ("npz", "table"):
        anomaly_values = decl.get("anomaly_values")
        default = "anomaly" if protocol == NORMAL_VS_ANOMALY or anomaly_values is not None else "class"
        labels = decl.get("labels", default)
        if labels not in ("class", "anomaly"):
            raise _fail(where, "labels", "'class' (a class per row) or 'anomaly' (0/1 flags, or values "
                        "listed in anomaly_values)", labels)
        if anomaly_values is not None and labels != "anomaly":
            raise ConfigError(f"{where}: 'anomaly_values' needs labels: anomaly")
        out["labels"] = labels
        out["anomaly_values"] = None if anomaly_values is None else _text_list(
            where, "anomaly_values", anomaly_values, scalars=True)
        implied = ONE_CLASS if labels == "class" else NORMAL_VS_ANOMALY
        why = f"labels: {labels}"
    else:
        implied = ONE_CLASS if fmt == "image-folder" else NORMAL_VS_ANOMALY
        why = f"format {fmt!r}"
    if protocol is not None and protocol != implied:
        raise ConfigError(f"{where}: protocol {protocol!r} does not fit {why}, which implies {implied!r}")
    out["protocol"] = implied
    classes = decl.get("classes")
    if classes is not None and implied != ONE_CLASS:
        raise ConfigError(f"{where}: 'classes' applies to the one-class protocol only; a normal-vs-anomaly "
                          f"dataset has the single class {NVA_CLASS!r}")
    out["classes"] = None if classes is None else _text_list(where, "classes", classes, scalars=True)


def load_declaration_file(path: PathLike) -> dict[str, Any]:
    """Read a declaration from a ``.yaml``/``.yml``/``.json`` file; relative paths resolve against its folder.

    Returns:
        The normalised declaration (``normalize_declaration``).

    Raises:
        ConfigError: Unreadable file, bad syntax, or a bad declaration, naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the dataset declaration ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        from adgan.yamlload import load_yaml

        data = load_yaml(text, str(path))  # strict: duplicate keys and alias bombs refused, as in specs
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    else:
        raise ConfigError(f"{path}: a dataset declaration file must end in .yaml, .yml or .json")
    return normalize_declaration(data, base_dir=path.parent.absolute(), where=str(path))


def resolve_declaration(value: str | Mapping[str, Any],
                        base_dir: PathLike | None = None) -> dict[str, Any] | None:
    """What a ``--dataset`` option or a sweep spec's ``dataset`` names, as a declaration.

    Returns:
        The normalised declaration for a mapping, for a path to a ``.yaml``/``.yml``/``.json`` file (relative
        to ``base_dir``), or for the name of a registered declared dataset; None for a built-in name or
        any other text (the caller reports unknown names as before).
    """
    if isinstance(value, Mapping):
        return normalize_declaration(value, base_dir=base_dir)
    if value in DATASETS:
        declaration = DATASETS.get(value).declaration
        return None if declaration is None else dict(declaration)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
        return load_declaration_file(path)
    return None


# ----- registration -----
def register_declared(decl: Mapping[str, Any], *, where: str | None = None) -> str:
    """Register a declared dataset in ``DATASETS`` (lazily: no file is read) and return its name.

    Idempotent: the same declaration again (after normalisation) is a no-op, so every process (a Ray
    worker) can register from the dict it received. Relative paths resolve against the current directory;
    pass a declaration from ``load_declaration_file``/``normalize_declaration`` to fix them earlier.

    Raises:
        ConfigError: A bad declaration, or the name is taken by a built-in dataset or by another
            declaration (the message shows both).
    """
    norm = normalize_declaration(decl, where=where)
    name = norm["name"]
    if name in DATASETS:
        existing = DATASETS.get(name).declaration
        if existing == norm:
            return name
        if existing is None:
            raise ConfigError(f"{where or 'dataset declaration'}: {name!r} is a built-in dataset; give the "
                              "declared dataset another name")
        diff = [f"{k}: {existing.get(k)!r} (registered) vs {norm.get(k)!r} (new)"
                for k in sorted(set(existing) | set(norm)) if existing.get(k) != norm.get(k)]
        raise ConfigError(f"dataset {name!r} is already registered from another declaration; they differ in "
                          f"{'; '.join(diff)}. Registered: {json.dumps(existing, sort_keys=True)}. New: "
                          f"{json.dumps(norm, sort_keys=True)}")
    DATASETS.register(name)(_make_spec(norm))
    return name


def _make_spec(d: dict[str, Any]) -> DatasetSpec:
    fmt = d["format"]
    frozen = json.dumps(d, sort_keys=True)  # the cache key of everything read for this declaration
    fractions = SplitFractions(*(d[k] for k in _FRACTIONS))
    load: Callable[[PathLike | None], RawImages | RawTabular]
    kind: str | Callable[[], str]
    classes: tuple[str, ...] | Callable[[], tuple[str, ...]]
    if fmt == "image-folder":
        kind, classes = "image", functools.partial(_folder_classes, d)
        load = lambda _data_dir: _load_image_folder(frozen)  # noqa: E731
        available = functools.partial(_is_dir, d["root"])
    elif fmt == "normal-anomaly-folder":
        kind, classes = "image", (NVA_CLASS,)
        load = lambda _data_dir: _load_nva_folder(frozen)  # noqa: E731
        available = functools.partial(_is_dir, d["root"])
    elif fmt == "npz":
        kind = functools.partial(_npz_kind, d)
        classes = (NVA_CLASS,) if d["protocol"] == NORMAL_VS_ANOMALY else functools.partial(_npz_classes, d)
        load = lambda _data_dir: _load_npz(frozen)  # noqa: E731
        available = functools.partial(_is_file, d["path"])
    else:
        kind = "tabular"
        classes = (NVA_CLASS,) if d["protocol"] == NORMAL_VS_ANOMALY else functools.partial(_table_classes, d)
        load = lambda _data_dir: _load_table(frozen)  # noqa: E731
        available = functools.partial(_is_file, d["path"])
    return DatasetSpec(d["name"], kind, classes, load, d.get("image_size"), protocol=d["protocol"],
                       fractions=fractions, declaration=d, available=available)


def _is_dir(path: str) -> bool:
    return Path(path).is_dir()


def _is_file(path: str) -> bool:
    return Path(path).is_file()


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


def _check_counts(where: str, counts: Sequence[tuple[str, int]], minimum: int, what: str) -> None:
    for label, n in counts:
        if n < minimum:
            raise DataError(f"{where}: {what} {label!r} has {n} samples, fewer than min_per_class {minimum}; "
                            "add samples, lower min_per_class or leave the class out with the declaration's "
                            "'classes' (a sweep's own 'classes' still loads it)")


def _sorted_labels(values: Sequence[str]) -> tuple[str, ...]:
    """Label texts sorted numerically when they are all integers, else as text."""
    unique = set(values)
    if all(re.fullmatch(r"-?\d+", v) for v in unique):
        return tuple(sorted(unique, key=int))
    return tuple(sorted(unique))


def _label_classes(d: dict[str, Any], found: Sequence[str], where: str, what: str) -> tuple[str, ...]:
    """``_chosen_classes`` of classes read from labels (an array's, a column's), where labels that are only
    0/1 flags are warned about: read as two classes, class '0' (the normals) is taken in turn as the
    anomaly, trained on the anomalies as its normal data. Said, not refused: two classes may be 0 and 1."""
    if {c.lower() for c in found} in ({"0", "1"}, {"false", "true"}):
        warnings.warn(f"{where}: the {what} are only {' and '.join(found)}, read as two classes (labels: "
                      "class), each in turn the anomaly; if they flag anomalies, declare labels: anomaly",
                      InputWarning, stacklevel=3)
    return _chosen_classes(d, found, where, what)


def _chosen_classes(d: dict[str, Any], found: Sequence[str], where: str, what: str) -> tuple[str, ...]:
    """The declared ``classes`` (checked against ``found``), or all found classes."""
    if d["classes"] is None:
        return tuple(found)
    # A declared name matches the found one in another Unicode form (datasets.nfc); the found spelling is
    # the class's name, so that a folder is found by it.
    spelled = {nfc(c): c for c in found}
    missing = [c for c in d["classes"] if c not in found and nfc(c) not in spelled]
    if missing:
        raise DataError(f"{where}: declared class {missing[0]!r} not found; the {what} are: "
                        f"{', '.join(found)}")
    return tuple(c if c in found else spelled[nfc(c)] for c in d["classes"])


# ----- image folders -----
def _root(d: dict[str, Any]) -> Path:
    root = Path(d["root"])
    if not root.is_dir():
        said = "is a file; expected the folder of one subfolder per class" if root.exists() else "not found"
        raise DataError(f"dataset {d['name']!r}: root: folder {root} {said}")
    return root


def _folder_classes(d: dict[str, Any]) -> tuple[str, ...]:
    """Class names of an image-folder dataset: its subfolders (sorted), or the declared ``classes``."""
    root = _root(d)
    loose = [p for p in root.iterdir() if p.is_file() and folders.is_image_file(p)]
    if loose:
        raise DataError(f"{root}: image files directly in the root (e.g. {loose[0].name}); the image-folder "
                        "format expects one subfolder per class: <root>/<class name>/<images>")
    # In the order of their composed Unicode form: a copy of the folders with accents written the other
    # way (macOS's decomposed names) has the same class indices.
    found = sorted((p.name for p in folders.subfolders(root)), key=lambda n: (nfc(n), n))
    if not found:
        raise DataError(f"{root}: no class subfolders; the image-folder format expects "
                        "<root>/<class name>/<images>")
    return _chosen_classes(d, found, str(root), "class folders")


def _folder_files(folder: Path, minimum: int) -> list[Path]:
    files = folders.image_files(folder)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(folders.IMAGE_EXTENSIONS)}, any letter case); "
                        "add images, or leave the folder out with 'classes' (image-folder)")
    if len(files) < minimum:
        raise DataError(f"{folder}: {len(files)} images, fewer than min_per_class {minimum}; add images, "
                        "lower min_per_class or leave the class out with the declaration's 'classes' (a "
                        "sweep's own 'classes' still loads it)")
    return files


@functools.lru_cache(maxsize=4)
def _read_folder_cached(key: tuple[tuple[str, int, int], ...], channels: int, size: int | None,
                        where: str) -> tuple[np.ndarray, list[list[int]]]:
    images, sizes = folders.read_images([Path(k[0]) for k in key], channels, size, where)
    _freeze(images)
    return images, sizes


def _read_folder(root: Path, files: list[Path], d: dict[str, Any]) -> tuple[np.ndarray, list[list[int]], str]:
    """Images (cached per process by the files' paths, sizes and times) and the digest of the contents."""
    where = f"dataset {d['name']!r} ({root})"
    images, sizes = _read_folder_cached(folders.stat_key(files), d["channels"], d["image_size"], where)
    return images, [list(s) for s in sizes], folders.folder_digest(root, files)  # copies: the cache's stay


def _load_image_folder(frozen: str) -> RawImages:
    d = json.loads(frozen)
    root = _root(d)
    # The registered (cached) class list, not a fresh listing: a folder added since must not shift the
    # class indices that anomaly_class and DatasetInfo.classes refer to.
    classes = DATASETS.get(d["name"]).classes
    files: list[Path] = []
    labels: list[int] = []
    groups = []
    for k, name in enumerate(classes):
        found = _folder_files(root / name, d["min_per_class"])
        files += found
        labels += [k] * len(found)
        groups.append((root / name, found))
    folders.refuse_shared_files(groups)
    images, sizes, digest = _read_folder(root, files, d)
    y = np.asarray(labels, dtype=np.int64)
    _freeze(y)
    return RawImages(images, y, str(root), digest,
                     preprocessing={"source_sizes": sizes, "source_format": d["format"]})


def _load_nva_folder(frozen: str) -> RawImages:
    """MVTec AD / anomalib Folder layout: train/good (training normals), test/good, test/<defect type>."""
    d = json.loads(frozen)
    root = _root(d)
    for part in ("train", "test"):
        if not (root / part / NORMAL_DIR).is_dir():
            raise DataError(f"{root}: no {part}/{NORMAL_DIR}/ folder; the normal-anomaly-folder format "
                            f"expects train/{NORMAL_DIR}/, test/{NORMAL_DIR}/ and test/<defect type>/ "
                            "(MVTec AD layout)")
    others = [p.name for p in folders.subfolders(root / "train") if p.name != NORMAL_DIR]
    if others:
        raise DataError(f"{root / 'train'}: holds {', '.join(others)}; train/ may only hold {NORMAL_DIR}/ "
                        "(the normal training images); put anomalies in test/<defect type>/")
    defects = sorted((p.name for p in folders.subfolders(root / "test") if p.name != NORMAL_DIR),
                     key=lambda n: (nfc(n), n))  # (as image-folder classes: either Unicode form, one order)
    if not defects:
        raise DataError(f"{root / 'test'}: no defect folders besides {NORMAL_DIR}/; expected "
                        "test/<defect type>/ with anomalous images")
    train = _folder_files(root / "train" / NORMAL_DIR, d["min_per_class"])
    test_good = _folder_files(root / "test" / NORMAL_DIR, 1)
    files, labels = train + test_good, [0] * (len(train) + len(test_good))
    groups = [(root / "train" / NORMAL_DIR, train), (root / "test" / NORMAL_DIR, test_good)]
    for k, name in enumerate(defects, 1):
        found = _folder_files(root / "test" / name, 1)
        files += found
        labels += [k] * len(found)
        groups.append((root / "test" / name, found))
    folders.refuse_shared_files(groups)
    images, sizes, digest = _read_folder(root, files, d)
    y = np.asarray(labels, dtype=np.int64)
    train_part = np.zeros(y.shape, dtype=bool)
    train_part[: len(train)] = True
    _freeze(y, train_part)
    return RawImages(images, y, str(root), digest, train_part=train_part,
                     preprocessing={"source_sizes": sizes, "source_format": d["format"],
                                    "anomaly_types": defects})


# ----- labels of arrays and tables -----
def _label_texts(y: np.ndarray, where: str) -> np.ndarray:
    """Labels (N,) as a str array, compared as text: ``label_text_of`` per value, vectorised."""
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one per row (N,), got shape {y.shape}")
    if y.dtype.kind == "b":
        return np.where(y, "1", "0")
    if y.dtype.kind in "iu":
        return y.astype(str)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{where}: labels hold NaN or infinite values")
        if (y == np.round(y)).all():
            return y.astype(np.int64).astype(str)
        return np.array([label_text_of(float(v)) for v in y], dtype=str)
    if y.dtype.kind in "UO":
        import pyarrow as pa

        texts = tables.integer_texts(pa.array(y.astype(str), type=pa.string()))
        return np.asarray(texts.to_numpy(zero_copy_only=False), dtype=str)
    raise DataError(f"{where}: labels of dtype {y.dtype} are not supported; use integers or text")


def _labels_for(texts: np.ndarray, d: dict[str, Any], classes: tuple[str, ...] | None,
                where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Map label texts to the protocol's labels.

    Returns:
        ``(keep, labels, types)``: bool (N,) rows used, int64 labels of those rows (class indices, or
        0 = normal / k = anomaly type k), and the anomaly type names (normal-vs-anomaly).
    """
    if d["protocol"] == ONE_CLASS:
        assert classes is not None
        keep = np.isin(texts, np.asarray(classes, dtype=str))
        lookup = {c: i for i, c in enumerate(classes)}
        labels = np.fromiter((lookup[t] for t in texts[keep]), dtype=np.int64, count=int(keep.sum()))
        counts = np.bincount(labels, minlength=len(classes))
        _check_counts(where, list(zip(classes, counts.tolist(), strict=True)), d["min_per_class"], "class")
        return keep, labels, []
    keep = np.ones(texts.shape, dtype=bool)
    if d["anomaly_values"] is not None:
        types = list(d["anomaly_values"])
        labels = np.zeros(texts.shape, dtype=np.int64)
        for k, value in enumerate(types, 1):
            hit = texts == value
            if not hit.any():  # most likely a typo ("normal" for "normal."): say so rather than drop it
                found = _sorted_labels(np.unique(texts).tolist())
                raise DataError(f"{where}: anomaly_values: {value!r} occurs in no row; the label values are: "
                                f"{', '.join(map(repr, found[:20]))}{' ...' if len(found) > 20 else ''}")
            labels[hit] = k
    else:
        lower = np.char.lower(texts.astype(str))
        flags = np.isin(lower, ["1", "true"])
        bad = ~(flags | np.isin(lower, ["0", "false"]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: labels: anomaly expects 0/1 flags, row {i + 1} has {str(texts[i])!r}; "
                            "declare anomaly_values to name the label values that are anomalies")
        labels, types = flags.astype(np.int64), ["anomaly"]
    n_normal, n_anomaly = int((labels == 0).sum()), int((labels > 0).sum())
    _check_counts(where, [("normal", n_normal)], d["min_per_class"], "class")
    if n_anomaly == 0:
        listed = f" (anomaly_values: {', '.join(d['anomaly_values'])})" if d["anomaly_values"] else ""
        raise DataError(f"{where}: no row is an anomaly{listed}")
    return keep, labels, types


# ----- .npz arrays -----
def _npz_file(d: dict[str, Any]) -> Path:
    path = Path(d["path"])
    if not path.is_file():
        raise DataError(f"dataset {d['name']!r}: file {path} not found")
    return path


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``x`` array of an ``.npz`` file, reading only its header."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "x.npy" not in names or "y.npy" not in names:
                raise DataError(f"{path}: an .npz dataset needs arrays 'x' and 'y'; it holds "
                                f"{', '.join(n.removesuffix('.npy') for n in names) or 'nothing'}")
            with z.open("x.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
    except DataError:
        raise  # (a ValueError too: said as it is, not as an unreadable file)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: not an .npz file written by numpy.savez ({exc})") from None
    return tuple(shape), dtype


def _npz_kind(d: dict[str, Any]) -> str:
    shape, _ = _npz_header(_npz_file(d))
    if len(shape) == 2:
        return "tabular"
    if len(shape) in (3, 4):
        return "image"
    raise DataError(f"{d['path']}: 'x' must be images (N, H, W) or (N, H, W, C), or tabular rows (N, D); "
                    f"got shape {shape}")


def _npz_classes(d: dict[str, Any]) -> tuple[str, ...]:
    path = _npz_file(d)
    _npz_header(path)
    texts = _label_texts(_npz_array(path, "y"), str(path))
    return _label_classes(d, _sorted_labels(texts.tolist()), str(path), "labels in 'y'")


def _npz_array(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z[key])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read array {key!r} ({exc}); object arrays are not "
                        "accepted") from None


def _npz_images(x: np.ndarray, d: dict[str, Any], where: str) -> np.ndarray:
    """x (N, H, W), (N, H, W, C) or (N, C, H, W) -> uint8, or float32 pixel units 0..255, (N, C, S, S).

    Channels last is assumed when the last axis has 1 or 3 entries, else channels first.
    """
    shape = x.shape  # (as the file holds it: what a message shows)
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[3] in (1, 3):
        x = np.moveaxis(x, 3, 1)
    elif x.shape[1] not in (1, 3):
        raise DataError(f"{where}: images must have 1 or 3 channels, (N, H, W, C) or (N, C, H, W); got "
                        f"shape {x.shape}")
    if d["channels"] is not None and x.shape[1] != d["channels"]:
        raise DataError(f"{where}: declared channels {d['channels']}, the images have {x.shape[1]} "
                        f"(x of shape {shape})")
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{where}: integer pixels must be in 0..255, got {x.min()}..{x.max()}")
        pixels = np.ascontiguousarray(x, dtype=np.uint8)
    elif np.issubdtype(x.dtype, np.floating):
        if d["pixel_range"] is None:
            raise DataError(f"{where}: float images need 'pixel_range' in the declaration ([0, 1], [0, 255] "
                            "or [-1, 1]): which values are black and white")
        lo, hi = d["pixel_range"]
        bad = np.argwhere(~np.isfinite(x))
        if bad.size:
            raise DataError(f"{where}: x[{int(bad[0][0])}] (image {int(bad[0][0])}, counting from 0) holds "
                            f"{x[tuple(bad[0])]}; expected finite pixel values in [{lo:g}, {hi:g}]")
        if x.min() < lo or x.max() > hi:
            raise DataError(f"{where}: pixel values must lie in the declared pixel_range [{lo:g}, {hi:g}], "
                            f"got {x.min():.4g}..{x.max():.4g}")
        if hi - lo > 2 and x.size and x.min() >= -1 and x.max() <= 1:
            # Scaled pixels declared as 0..255 train on images all but black, with no error anywhere.
            warnings.warn(f"{where}: the pixels lie in {x.min():.4g}..{x.max():.4g}, a sliver of the "
                          f"declared pixel_range [{lo:g}, {hi:g}]: if they are scaled to [0, 1] (or [-1, "
                          "1]), declare that range, or every image is taken as nearly black", InputWarning,
                          stacklevel=2)
        # float32 pixel units 0..255, so to_model_space maps them to [-1, 1] without rounding to 8 bits
        pixels = pixel_units(x, lo, hi)
    else:
        raise DataError(f"{where}: images must be integers 0..255 or floats, got dtype {x.dtype}")
    h, w = pixels.shape[2:]
    size = d["image_size"]
    if size is None:
        if h != w:
            raise DataError(f"{where}: images are {h}x{w} (height x width), not square; declare image_size")
        return pixels
    return folders.resize_pixels(pixels, size)


@functools.lru_cache(maxsize=2)
def _load_npz_cached(frozen: str, path: str, size: int, mtime_ns: int) -> RawImages | RawTabular:
    d = json.loads(frozen)
    where = f"dataset {d['name']!r} ({path})"
    x, y = _npz_array(Path(path), "x"), _npz_array(Path(path), "y")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{where}: 'y' must hold one label per row of 'x' ({x.shape[0]},), got shape "
                        f"{y.shape}")
    texts = _label_texts(y, where)
    classes = DATASETS.get(d["name"]).classes if d["protocol"] == ONE_CLASS else None
    keep, labels, types = _labels_for(texts, d, classes, where)
    x = x[keep]
    digest = sha256_file(path)
    _freeze(labels)
    if x.ndim == 2:
        image_keys = [k for k in ("channels", "image_size", "pixel_range") if d.get(k) is not None]
        if image_keys:  # (rows of features: flattened images would need reshaping to (N, H, W) first)
            warnings.warn(f"{where}: 'x' is 2-D {x.shape}, rows of features, so {', '.join(image_keys)} "
                          "(for images) are ignored; flattened images are read as images once 'x' is (N, H, "
                          "W) or (N, H, W, C)", InputWarning, stacklevel=2)
        try:
            # float64 sources stay float64 until scaled (a large offset would round away in float32)
            wide = x.dtype == np.float64 or (np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize > 2)
            feats = np.asarray(x, dtype=np.float64 if wide else np.float32)
        except (TypeError, ValueError):
            raise DataError(f"{where}: tabular 'x' must be numeric, got dtype {x.dtype}") from None
        if not np.isfinite(feats).all():
            i, j = (int(v) for v in np.argwhere(~np.isfinite(feats))[0])
            raise DataError(f"{where}: x[{i}, {j}] is not finite ({feats[i, j]})")
        _freeze(feats)
        prep = {"format": "plain", "n_features": int(feats.shape[1]), "source_format": "npz"}
        if types:
            prep["anomaly_types"] = types
        return RawTabular(None, lambda idx: feats[idx], path, digest, prep, labels=labels)
    if x.ndim not in (3, 4):
        raise DataError(f"{where}: 'x' must be images (N, H, W[, C]) or rows (N, D); got shape {x.shape}")
    images = _npz_images(x, d, where)
    _freeze(images)
    h, w = (x.shape[1], x.shape[2]) if x.ndim == 3 or x.shape[3] in (1, 3) else (x.shape[2], x.shape[3])
    prep: dict[str, Any] = {"source_sizes": [[int(h), int(w), int(x.shape[0])]], "source_format": "npz"}
    if types:
        prep["anomaly_types"] = types
    return RawImages(images, labels, path, digest, preprocessing=prep)


def _load_npz(frozen: str) -> RawImages | RawTabular:
    path = _npz_file(json.loads(frozen))
    st = os.stat(path)
    return _load_npz_cached(frozen, str(path), st.st_size, st.st_mtime_ns)


# ----- tables -----
def _table_file(d: dict[str, Any]) -> Path:
    path = Path(d["path"])
    if not path.is_file():
        raise DataError(f"dataset {d['name']!r}: file {path} not found")
    return path


def _check_label_column(path: Path, d: dict[str, Any]) -> None:
    columns = tables.table_columns(path)
    if d["label_column"] not in columns:
        raise DataError(f"{path}: no label column {d['label_column']!r} (declared in 'label_column'); the "
                        f"columns are: {', '.join(columns)}{tables.separator_hint(columns)}")


@functools.lru_cache(maxsize=8)
def _table_labels_cached(path: str, size: int, mtime_ns: int, label_column: str) -> np.ndarray:
    p = Path(path)
    table = tables.read_table(p, [label_column], [label_column])
    column = tables.integer_texts(table.column(label_column))  # "1.0" is the label 1, as in the docs
    texts = np.asarray(tables.text_values(column, label_column, path), dtype=str)
    _freeze(texts)
    return texts


def _table_labels(d: dict[str, Any]) -> np.ndarray:
    """The label column as text (N,), cached per process by the file's path, size and time."""
    path = _table_file(d)
    _check_label_column(path, d)
    st = os.stat(path)
    return _table_labels_cached(str(path), st.st_size, st.st_mtime_ns, d["label_column"])


def _table_classes(d: dict[str, Any]) -> tuple[str, ...]:
    found = _sorted_labels(_table_labels(d).tolist())
    return _label_classes(d, found, d["path"], "labels in the label column")


@functools.lru_cache(maxsize=2)
def _load_table_cached(frozen: str, path: str, size: int, mtime_ns: int) -> RawTabular:
    import pyarrow as pa

    d = json.loads(frozen)
    where = f"dataset {d['name']!r} ({path})"
    p = Path(path)
    _check_label_column(p, d)
    table = tables.read_table(p, [*d["categorical"], d["label_column"]])
    label = d["label_column"]
    texts = np.asarray(tables.text_values(tables.integer_texts(table.column(label)), label, where), dtype=str)
    classes = DATASETS.get(d["name"]).classes if d["protocol"] == ONE_CLASS else None
    keep, labels, types = _labels_for(texts, d, classes, where)
    if not keep.all():
        table = table.filter(pa.array(keep))
    schema = tables.fit_schema(table, d["label_column"], d["categorical"], d["drop_columns"], where)
    x = tables.encode_table(table, schema, where, strict=True, training=True)
    _freeze(x, labels)
    extra: dict[str, Any] = {"source_format": "table", **({"anomaly_types": types} if types else {})}

    def fit_on(train_idx: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
        fitted, columns = schema.fitted_on(x[train_idx])
        return (lambda idx: x[idx][:, columns]), {**fitted.to_dict(), **extra}

    return RawTabular(None, lambda idx: x[idx], path, sha256_file(p), {**schema.to_dict(), **extra},
                      labels=labels, fit_on=fit_on)


def _load_table(frozen: str) -> RawTabular:
    path = _table_file(json.loads(frozen))
    st = os.stat(path)
    return _load_table_cached(frozen, str(path), st.st_size, st.st_mtime_ns)
