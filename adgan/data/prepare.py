"""Turn a user's raw input into model space exactly as the training data was prepared.

``info`` is ``DatasetInfo.to_dict()`` as stored with a checkpoint; its ``preprocessing`` holds the facts used
here (image size and channels; the KDD99 or user-table column schema with its categories in a fixed order;
min-max parameters when scaling was on), so a checkpoint keeps working even if the package's constants
change later. Image folders and tables are read by the same code as the declared datasets
(``adgan.data.folders``, ``adgan.data.tables``), so the same files give the same arrays.

Category values absent from training (KDD99, user tables) are encoded as none of the known values and
reported with an ``UnseenCategoryWarning``; ``strict=True`` refuses them (``adgan.data.unseen``).
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data import folders, formats, kdd, tables
from adgan.data.datasets import minmax_apply, model_floats
from adgan.data.images import pixel_units, resize, to_model_space
from adgan.errors import DataError, InputWarning


def prepare_input(
    x: Any, info: dict[str, Any], strict: bool = False, pixel_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Prepare raw input ``x`` for a model trained on the dataset described by ``info``.

    Images (``info["kind"] == "image"``), model shape (C, S, S):
        - integer pixels 0..255 (uint8 or any integer dtype), (N, H, W) when C == 1, (N, C, H, W) or
          (N, H, W, C), square -> scaled to [-1, 1] and resized to S (an H other than the dataset's
          native size, S included, is first resized to the native size, as image files are read);
        - float pixels in ``pixel_range``, same layouts -> scaled to [-1, 1] and resized to S like integer
          pixels. The range is, unless given: the declared ``pixel_range`` of a model trained on float
          ``.npz`` images, so new data in the training file's form gives the training file's input;
          otherwise [-1, 1] (model space: passed through, resized to S when needed).
    Tabular, KDD99 schema: raw rows (N, 41) (or (N, 42), the label last and ignored) of strings or
        objects, as from ``read_kdd_csv_rows`` -> the one-hot columns (+ the stored min-max scaling);
        numeric (N, 121) is taken as already in model space and passed through.
    Tabular, user table (a declared ``table`` dataset): a pandas DataFrame or pyarrow Table with the
        training table's columns (any order; the label and dropped columns may be present) -> the encoded
        columns (+ scaling); numeric (N, D) is taken as already encoded (model space) and passed through.
    Tabular, plain features: numeric (N, D) raw features -> float32 (+ the stored min-max scaling).

    Args:
        x: The input, as above.
        info: ``DatasetInfo.to_dict()`` of the training data (from the checkpoint).
        strict: Refuse category values absent from training instead of encoding them as none of the
            known values with an ``UnseenCategoryWarning``.
        pixel_range: ``(black, white)`` of float image pixels, e.g. ``(0, 1)`` or ``(0, 255)``; None: as
            above. Integer pixels are always 0..255.

    Returns:
        float32 (N, C, S, S) or (N, D).

    Raises:
        DataError: Wrong shape or channels (saying expected vs got), non-numeric or non-finite values,
            pixel values outside 0..255 or floats outside their pixel range, missing or unknown table
            columns, and with ``strict`` unseen categories.
    """
    if info.get("kind") == "image":
        return _prepare_images(np.asarray(x), info, pixel_range)
    if info.get("kind") == "tabular":
        named = hasattr(x, "column_names") or hasattr(x, "columns")  # a pyarrow Table or pandas DataFrame
        if named and info["preprocessing"].get("format") == tables.FORMAT:
            return _prepare_table(tables.table_from_frame(x), info, "input", strict)
        return _prepare_tabular(np.asarray(x), info, strict)  # other models: as an array, as before
    raise DataError(f"dataset info: unknown kind {info.get('kind')!r}, expected 'image' or 'tabular'")


def float_pixel_range(info: dict[str, Any], given: tuple[float, float] | None = None) -> tuple[float, float]:
    """``(black, white)`` of float image input for the model of ``info``: ``given``, else the declared
    ``pixel_range`` of its training ``.npz`` (float images), else model space (-1, 1)."""
    if given is not None:
        lo, hi = (float(v) for v in given)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise DataError(f"pixel range: expected black < white (e.g. 0 1 or 0 255), got {lo:g} {hi:g}")
        return lo, hi
    declared = (info["preprocessing"].get("declaration") or {}).get("pixel_range")
    return (float(declared[0]), float(declared[1])) if declared else (-1.0, 1.0)


def _prepare_images(
    x: np.ndarray, info: dict[str, Any], pixel_range: tuple[float, float] | None
) -> np.ndarray:
    prep = info["preprocessing"]
    c, size = int(prep["channels"]), int(prep["image_size"])
    native = int(prep.get("native_size", size))
    expected = f"(N, {c}, H, W) or (N, H, W, {c})" + (" or (N, H, W)" if c == 1 else "") + " with H == W"
    given = tuple(x.shape)  # (named in the message as the caller passed it, before any moving of axes)
    if x.ndim == 3 and c == 1:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] != c and x.shape[3] == c:
        x = np.moveaxis(x, 3, 1)
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] != c or x.shape[2] != x.shape[3]:
        raise DataError(f"input: expected {c}-channel images {expected} for this {info.get('name', '')} "
                        f"model, got shape {given}")
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"input: integer pixels must be in 0..255, got {x.min()}..{x.max()}")
        pixels: np.ndarray = x.astype(np.uint8)
    else:
        lo, hi = float_pixel_range(info, pixel_range)
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"input: expected integer pixels 0..255 or float pixels in [{lo:g}, {hi:g}], "
                            f"got dtype {x.dtype}")
        bad = np.argwhere(~np.isfinite(x))
        if bad.size:
            raise DataError(f"input: image {int(bad[0][0])} (counting from 0) holds {x[tuple(bad[0])]}; "
                            "expected finite pixel values")
        if x.min() < lo or x.max() > hi:
            space = " (model space)" if (lo, hi) == (-1.0, 1.0) else ""
            raise DataError(
                f"input: float pixels must lie in [{lo:g}, {hi:g}]{space}, got {x.min():.4g}..{x.max():.4g}; "
                "pass integer pixels 0..255, or give the floats' black and white (adgan score --pixel-range "
                "BLACK WHITE; prepare_input(..., pixel_range=(black, white)))"
            )
        if pixel_range is None and (lo, hi) == (-1.0, 1.0) and x.size and float(x.min()) >= 0.0:
            # Model space puts black at -1: real images taken as such almost always reach below 0. All of
            # them in [0, 1] is the mark of [0, 1]-scaled pixels, which would score silently wrong.
            warnings.warn(
                f"float pixels all in [0, {float(x.max()):.4g}], taken as model space [-1, 1] (black = -1); "
                "if they are pixels scaled to [0, 1], give their range: adgan score --pixel-range 0 1, "
                "prepare_input(..., pixel_range=(0, 1))", InputWarning, stacklevel=3)
        if (lo, hi) == (-1.0, 1.0) and x.shape[2] in (size, native):
            return resize(np.ascontiguousarray(x, dtype=np.float32), size)
        # (as a declared .npz of float images is read for training)
        pixels = pixel_units(x, lo, hi)
    if pixels.shape[2] != native:
        # Another size (the model's own size too, where it is not the native one): to the native size
        # first, as the files of an image folder are read, so that the same pixels give the same model
        # input as an array and as image files.
        pixels = folders.resize_pixels(pixels, native)
    return to_model_space(pixels, size)


def _numeric_rows(path: Path) -> np.ndarray:
    """A plain tabular model's rows from a Parquet file (every column numeric, in order) or a numeric CSV
    without header: float64 (N, D)."""
    if path.suffix.lower() in tables.PARQUET_SUFFIXES:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path).read()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
        for field in table.schema:
            if not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
                    or pa.types.is_boolean(field.type)):
                raise DataError(f"{path}: column {field.name!r} is {field.type}; this model takes numeric "
                                "feature columns only")
        cols = [np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64) for c in table.columns]
        return np.stack(cols, axis=1) if cols else np.empty((table.num_rows, 0))
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        message = str(exc).rstrip(".")
        at = re.search(r"at row (\d+), column (\d+)", message)
        if at:  # numpy counts data rows from 0 (blank and # lines skipped): say the file's line
            line, column = _file_line(path, int(at.group(1))), int(at.group(2))
            message = message[: at.start()] + f"on line {line}, column {column}" + message[at.end():]
            if line == 1:
                message += "; the first line looks like a header row: remove it"
        raise DataError(f"{path}: expected a numeric CSV without header (this model was trained on plain "
                        f"rows), or a Parquet file ({message})") from None
    width = rows.shape[1]
    header = ",".join(map(str, range(width)))
    if width >= 3 and np.array_equal(rows[0], np.arange(width)) and _first_line(path) == header:
        # pandas writes a frame made from an array with the header 0,1,...,D-1: numbers, so read as data it
        # would be scored, one score too many and every later score a row off. (With one or two features
        # "0" and "0,1" are as likely a first row: those are read as data.)
        raise DataError(f"{path}: the first line is 0,1,...,{rows.shape[1] - 1}, the header pandas writes "
                        "for unnamed columns, not a row: remove it (DataFrame.to_csv(..., header=False)); "
                        "this model takes a numeric CSV without header")
    return rows


def _data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number from 1, text)`` of the lines numpy.loadtxt reads as rows: it skips blank lines and
    lines that are only a ``#`` comment, and reads a ``.gz`` file decompressed."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", errors="replace") as fh:
        for number, text in enumerate(fh, 1):
            if text.split("#", 1)[0].strip():
                yield number, text


def _first_line(path: Path) -> str:
    """The first line numpy.loadtxt reads as a row, stripped."""
    return next((text.strip() for _, text in _data_lines(path)), "")


def _file_line(path: Path, data_row: int) -> int:
    """The line number (from 1) of numpy.loadtxt's data row ``data_row`` (from 0)."""
    return next((number for row, (number, _) in enumerate(_data_lines(path)) if row == data_row),
                data_row + 1)


def _scaled(x: np.ndarray, prep: dict[str, Any], where: str = "input") -> np.ndarray:
    names = prep.get("columns")
    if prep.get("scale"):
        return minmax_apply(x, prep["scale_min"], prep["scale_max"], where, names)
    return model_floats(x, where, names)


def _prepare_table(table: Any, info: dict[str, Any], where: str, strict: bool) -> np.ndarray:
    prep = info["preprocessing"]
    schema = tables.TableSchema.from_dict(prep)
    return _scaled(tables.encode_table(table, schema, where, strict=strict), prep, where)


def _prepare_tabular(x: np.ndarray, info: dict[str, Any], strict: bool) -> np.ndarray:
    prep = info["preprocessing"]
    d = int(info["input_shape"][0])
    if prep.get("format") in ("kdd99", tables.FORMAT) and x.ndim == 2 and x.shape[1] == d \
            and np.issubdtype(x.dtype, np.number):
        encoded = _finite(x.astype(np.float32), "input")  # already encoded: model space
        if prep.get("scale") and encoded.size and (encoded.min() < -1.0 or encoded.max() > 2.0):
            # Min-max scaled features lie in [0, 1] on the training data: far outside, these are most likely
            # raw values, which would score silently wrong.
            warnings.warn(
                f"numeric rows taken as encoded and scaled (model space), but their values reach "
                f"{float(encoded.min()):.4g}..{float(encoded.max()):.4g} while this model's scaled features "
                "lie in [0, 1] on its training data: if these are raw values, pass the raw table (a CSV/"
                "Parquet file, or a DataFrame) so that they are encoded and scaled as in training",
                InputWarning, stacklevel=3)
        return encoded
    if prep.get("format") == "kdd99":
        schema = kdd.KddSchema.from_dict(prep)
        rows = kdd.rows_from_array(x, schema, strict=False)
        kdd.report_unseen("input", rows, strict)
        return _scaled(kdd.encode(rows, schema), prep)
    if prep.get("format") == tables.FORMAT:
        raise DataError(f"input: expected encoded rows (N, {d}), or the raw table with its columns (a CSV "
                        "or Parquet file; in Python also a pandas DataFrame or pyarrow Table); got an array "
                        f"of shape {tuple(x.shape)}")
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
        raise DataError(f"{where}: x[{i}, {j}] (row {i + 1}, column {j + 1}) is not finite ({x[i, j]})")
    return x


def prepare_image_folder(path: str | os.PathLike[str], info: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Read every image below folder ``path`` and prepare it for an image model.

    The files are those of ``folders.image_files`` (any depth, hidden entries skipped), **in the order of
    their relative paths** (``/``-separated, sorted as text), which is the row order of the result. Each is
    converted to the model's channels and, when its size differs from the dataset's native size, resized
    to it and rounded to uint8 exactly as a declared image folder is read; then scaled and resized like
    the training data. The same files therefore give the same rows as ``load_dataset`` gave.

    Returns:
        ``(x, paths)``: float32 (N, C, S, S) in [-1, 1], and the N relative paths (``/``-separated).

    Raises:
        DataError: Not an image model, no image files, or an unreadable file (naming it).
    """
    path = Path(path)
    if info.get("kind") != "image":
        raise DataError(f"{path}: a folder of images fits image models; this {info.get('name', '')} model "
                        "takes tabular rows")
    files = folders.image_files(path)
    x = _prepare_image_files(files, info, str(path))
    return x, [f.relative_to(path).as_posix() for f in files]


def _prepare_image_files(files: list[Path], info: dict[str, Any], where: str) -> np.ndarray:
    prep = info["preprocessing"]
    channels, size = int(prep["channels"]), int(prep["image_size"])
    native = int(prep.get("native_size", size))
    raw, _ = folders.read_images(files, channels, native, where)
    return to_model_space(raw, size)


def kept_columns(path: str | os.PathLike[str], info: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    """Columns ``names`` of a declared table's file to score (CSV with its header row, or Parquet), as text,
    one value per data row in the order ``prepare_file`` scores them (an empty cell is ""): what
    ``adgan score --keep`` copies beside the scores (an id, a timestamp), features of the model or not.

    Raises:
        DataError: The model was not trained on a declared table, or a column is not in the file.
    """
    path = Path(path)
    prep = info.get("preprocessing") or {}
    named = path.name.lower().endswith(tables.CSV_SUFFIXES + tables.PARQUET_SUFFIXES)
    if info.get("kind") != "tabular" or prep.get("format") != tables.FORMAT or not named:
        raise DataError(f"{path}: --keep copies columns of a table with named columns (CSV with a header "
                        "row, or Parquet) to score with a model trained on a declared table; this model or "
                        "input has no column names")
    have = tables.table_columns(path)
    missing = [n for n in names if n not in have]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))} to keep; its columns are: "
                        f"{', '.join(have)}{tables.separator_hint(have)}")
    table = tables.read_table(path, list(names), list(dict.fromkeys(names)))
    return [["" if v is None else str(v) for v in table.column(n).to_pylist()] for n in names]


def _numpy_file(path: Path, suffix: str) -> np.ndarray:
    """The array of a ``.npy`` file, or the ``x`` of an ``.npz`` file, with at least one sample."""
    names: list[str] = []
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                arr = np.asarray(z["x"]) if "x" in names else None
        else:
            arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or truncated file
        # numpy reports any file that is not .npy as "pickled data": say what was expected instead.
        written = "numeric .npz file written by numpy.savez" if suffix == ".npz" else (
            "numeric .npy array written by numpy.save")
        raise DataError(f"{path}: not a {written} ({exc or 'the file is empty'})") from None
    if arr is None:
        raise DataError(f"{path}: expected an array 'x' in the .npz file; it holds {', '.join(names)}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(f"{path}: holds no samples (shape {arr.shape}); expected N >= 1 rows or images")
    return arr


def prepare_file(
    path: str | os.PathLike[str],
    info: dict[str, Any],
    strict: bool = False,
    pixel_range: tuple[float, float] | None = None,
    keep: Sequence[str] = (),
) -> np.ndarray:
    """Read ``path`` and prepare it like ``prepare_input``. ``keep``: columns of a declared table's file
    that are carried beside the scores (``kept_columns``), allowed there without being features.

    - ``.npy`` (numpy arrays, no pickles) or ``.npz`` (its ``x``) for any dataset;
    - a folder of images (flat or with subfolders) or one image file for image datasets, rows in the order
      of ``prepare_image_folder`` (sorted relative paths);
    - for tabular datasets, ``.csv``/``.csv.gz``/``.gz`` rows: KDD99 raw rows (41 features, optional label,
      no header) are parsed and encoded straight from the file (fast, no per-cell Python objects);
      a declared table's CSV (header row) or Parquet file (``.parquet``/``.pq``) is encoded with its stored
      schema, the label column dropped when present; plain datasets read as numeric CSV without header.

    Args:
        path: The file or folder.
        info: ``DatasetInfo.to_dict()`` of the training data (from the checkpoint).
        strict: Refuse category values absent from training (KDD99, tables) instead of encoding them as
            none of the known values with an ``UnseenCategoryWarning`` naming column, values and row count.
        pixel_range: ``(black, white)`` of float images in a ``.npy``/``.npz`` (see ``prepare_input``).

    Returns:
        float32 (N, C, S, S) or (N, D).
    """
    path = Path(path)
    if path.is_dir():
        return prepare_image_folder(path, info)[0]
    if info.get("kind") == "image" and folders.is_image_file(path):
        return _prepare_image_files([path], info, str(path))
    suffix = path.suffix.lower()  # (data.NPY as data.npy: image files and tables are matched so too)
    if suffix in (".npz", ".npy"):
        arr = _numpy_file(path, suffix)
    else:
        if info.get("kind") != "tabular":
            raise DataError(f"{path}: image input must be a .npy array, an image file or a folder of images "
                            f"({', '.join(folders.IMAGE_EXTENSIONS)}), got {path.suffix or 'no suffix'!r}")
        prep = info["preprocessing"]
        if suffix not in tables.PARQUET_SUFFIXES:
            _warn_blank_lines(path)
        if prep.get("format") == "kdd99":
            if suffix in tables.PARQUET_SUFFIXES:
                raise DataError(f"{path}: a KDD99 model reads raw rows from a CSV file (gzip'd or not, no "
                                "header, 41 features and optionally the label) or encoded rows from .npy; "
                                "got a Parquet file")
            schema = kdd.KddSchema.from_dict(prep)
            rows = kdd.read_kdd_file(path, schema, require_label=False, strict=False)
            kdd.report_unseen(str(path), rows, strict)
            return _scaled(kdd.encode(rows, schema), prep)
        if prep.get("format") == tables.FORMAT:
            schema = tables.TableSchema.from_dict(prep)
            table = tables.read_table(path, [*schema.categorical, schema.label_column])
            features = {*schema.numeric, *schema.categorical}
            table = table.drop_columns([c for c in keep if c in table.column_names and c not in features])
            return _prepare_table(table, info, str(path), strict)
        arr = _numeric_rows(path)
    try:
        return prepare_input(arr, info, strict, pixel_range)
    except DataError as exc:  # name the file instead of "input"
        raise DataError(f"{path}: {str(exc).removeprefix('input: ')}") from None


def _warn_blank_lines(path: Path) -> None:
    """Empty lines between the rows of a CSV are skipped: one score per data row, so the scores' order no
    longer matches the file's line numbers there. Said, so that nobody joins them by line number."""
    try:
        blank, first = formats.blank_lines_within(path)
    except (OSError, EOFError, ValueError, zlib.error):  # (a damaged .gz, not text): the reader says it
        return
    if blank:
        warnings.warn(f"{path}: {blank} empty line{'s' if blank > 1 else ''} between the rows (the first at "
                      f"line {first}) {'were' if blank > 1 else 'was'} skipped: the scores are one per data "
                      "row, in order, not one per line of the file", InputWarning, stacklevel=3)
