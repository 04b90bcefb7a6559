"""User tables (CSV with a header row, or Parquet): reading, the column schema and its one-hot encoding.

Encoding (``TableSchema``): the numeric columns in file order, raw (``load_dataset`` then min-max scales a
declared table's features by default, ``adgan.data.default_scale``), then one one-hot block per declared
categorical column, in declaration order, each block's values sorted as text; column names
``"<column>=<value>"``.
The label column and ``drop_columns`` are not features. Categorical columns are read as text (CSV cells as
written; Parquet values cast to text), so ``"1"`` is one category whatever the file's type inference.

The schema is stored with every checkpoint (``to_dict``) with its categories as ``[column, [values]]``
pairs: a list keeps its order through ``json.dumps(sort_keys=True)``. At score time a value absent from a
block is encoded as "none of the known" (all zeros) and reported (``adgan.data.unseen``), or refused with
``strict=True``.
"""

from __future__ import annotations

import csv
import gzip
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data.unseen import UnseenValues, count_unseen, handle_unseen
from adgan.errors import DataError, InputWarning

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
FORMAT = "table"


CSV_NULLS = [""]  # only an empty cell is missing: "NA", "N/A", "null" ... are text (a category's value)


def table_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name (case-insensitive).

    Raises:
        DataError: Another suffix.
    """
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(f"{path}: expected a table file ending in {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def table_columns(path: Path) -> list[str]:
    """The column names of a table file (a CSV's header row, a Parquet file's schema), reading no rows."""
    try:
        if table_format(path) == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        opener = gzip.open if _is_gzip(path) else open
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {_not_utf8(path, exc)}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # pyarrow's errors (ArrowException) for a damaged Parquet file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if not header:
        raise DataError(f"{path}: empty file; expected a header row naming the columns")
    return header


def _not_utf8(path: Path, exc: object) -> str:
    """What to say of a CSV that is not UTF-8: UTF-16 (a spreadsheet's "Unicode text") named as such."""
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            head = fh.read(4096)
    except Exception:  # noqa: BLE001 (a damaged gzip stream raises zlib.error: nothing to tell from it)
        head = b""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or head.count(b"\0") * 4 >= len(head) > 0:
        return ("UTF-16 text (a spreadsheet's 'Unicode text' export); expected a UTF-8 CSV file (save it as "
                "CSV UTF-8, e.g. `iconv -f utf-16 -t utf-8`)")
    return (f"not UTF-8 text ({exc}); expected a UTF-8 CSV file (save it as UTF-8, e.g. "
            "`iconv -f latin1 -t utf-8`)")


def separator_hint(names: Sequence[str]) -> str:
    """For a "no such column" message: a hint when the header read as one column holding another separator."""
    sep = next((c for c in ";\t|" if len(names) == 1 and c in names[0]), None)
    return f" (one column named with {sep!r}: only comma-separated files are read)" if sep else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def header_hint(names: Sequence[str]) -> str:
    """For a column-name error: a hint when the header row reads like data (a file without header, whose
    first row became the column names)."""
    if names and sum(_is_number(n) for n in names) * 2 >= len(names):
        return (" (the first line reads like data, not column names: a table needs its header row, "
                "the training table's column names)")
    return ""


def _is_index_name(name: str) -> bool:
    """A column name pandas gives the row index it writes (to_csv: '' or 'Unnamed: 0'; to_parquet)."""
    return (not name.strip() or name.startswith("Unnamed: ")
            or bool(re.fullmatch(r"__index_level_\d+__", name)))


def _index_hint(name: str) -> str:
    """For a column a table should not have: the row index pandas writes, named so."""
    if _is_index_name(name):
        return (f" ({name!r} is often a row index that pandas wrote: to_csv / to_parquet with index=False "
                "leaves it out)")
    return ""


def _spaced_hint(missing: Sequence[str], names: Sequence[str]) -> str:
    """For missing columns: those present under their name written otherwise (stray spaces around it, or
    other letter case: a feed that upper-cases its header)."""
    spaced = [(m, n) for m in missing for n in names if n != m and n.strip().casefold() == m.casefold()]
    if not spaced:
        return ""
    more = f"; and {len(spaced) - 3} more" if len(spaced) > 3 else ""
    shown = "; ".join(f"{m!r} is there as {n!r}, {_how_written(m, n)}" for m, n in spaced[:3])
    return f" ({shown}{more}: rename {'them' if len(spaced) > 1 else 'it'})"


def _how_written(name: str, found: str) -> str:
    if found.strip() == name:
        return "with spaces"
    return "in other letter case" + (" and with spaces" if found.strip() != found else "")


def read_table(path: Path, text_columns: Sequence[str], columns: Sequence[str] | None = None) -> Any:
    """Read a CSV (header row; gzip'd or plain) or Parquet file as a ``pyarrow.Table``.

    Args:
        path: The file.
        text_columns: Columns read (CSV) or cast (Parquet) as text: the categorical and label columns.
        columns: Read only these columns (all must exist; see ``table_columns``); None = all.

    Raises:
        DataError: Unreadable or malformed file, naming it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if table_format(path) == "parquet":
            # ParquetFile, not pq.read_table (a dataset scan): see adgan.sweep.results._parquet_from_bytes.
            with pq.ParquetFile(path) as parquet:
                missing = [c for c in columns or () if c not in parquet.schema_arrow.names]
                if missing:  # (ParquetFile.read leaves out a column it does not have, without a word)
                    raise DataError(f"{path}: no column {', '.join(map(repr, missing))}; its columns: "
                                    f"{', '.join(parquet.schema_arrow.names)}")
                table = parquet.read(columns=list(columns) if columns is not None else None)
            for name in text_columns:
                if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
                    i = table.column_names.index(name)
                    table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
        else:
            with pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None) as stream:
                table = pcsv.read_csv(stream, convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in text_columns},
                    include_columns=list(columns) if columns is not None else None,
                    # An empty text cell is a missing value (refused naming its row), not the category "";
                    # any other spelling stays text (a category of its own, e.g. the country code "NA").
                    strings_can_be_null=True,
                    null_values=CSV_NULLS,
                ))
    except (pa.ArrowException, OSError) as exc:
        if "Empty CSV file" in str(exc):  # (pyarrow's words for a file of nothing, or of blank lines)
            raise DataError(f"{path}: an empty file; expected a header row and data rows") from None
        said = _not_utf8(path, exc) if table_format(path) != "parquet" else ""
        if said and ("invalid UTF8" in str(exc) or said.startswith("UTF-16")):
            raise DataError(f"{path}: {said}") from None
        raise DataError(f"{path}: {exc}{_ragged_hint(path, str(exc))}") from None
    twice = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: column name(s) {', '.join(map(repr, twice))} appear more than once; "
                        f"expected one column per name{header_hint(table.column_names)}")
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows (only {'a header' if table.num_columns else 'nothing'})")
    return _numbers_from_text(table, text_columns)


def _numbers_from_text(table: Any, text_columns: Sequence[str]) -> Any:
    """``table`` with its text columns that hold only numbers (" 1.5", "2", a Parquet column of numbers
    stored as strings) as float64, but for ``text_columns``: a CSV reader types a column by its cells, a
    Parquet file by its writer, and the same numbers must be the same feature whichever file holds them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if name in text_columns or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        numbers = pc.fill_null(pc.match_substring_regex(col, _NUMBER), True)
        if col.null_count < len(col) and pc.all(numbers).as_py():
            table = table.set_column(i, name, pc.cast(pc.utf8_trim_whitespace(col), pa.float64()))
    return table


# An integer written as a float ("75001.0"), the integer being group 1.
INTEGER_TEXT = r"^([+-]?\d+)\.0*$"


def integer_texts(column: Any) -> Any:
    """A text column with integers written as floats ("75001.0", "1.0") as the integers ("75001", "1"):
    pandas writes an integer column holding a missing cell, or a float label, so in CSV, while Parquet's
    floats read as text are "1" already; a value compares as the number it spells, whichever file held it.
    ``column``: a pyarrow string (chunked) array; returns the same kind."""
    import pyarrow.compute as pc

    return pc.replace_substring_regex(column, INTEGER_TEXT, r"\1")


def _ragged_hint(path: Path, message: str) -> str:
    """For Arrow's "Expected N columns, got M" (which names no line): the first line of the CSV whose
    number of cells differs from the header's, read again with Python's csv module (only on that error)."""
    import csv
    import gzip

    if "Expected" not in message or "columns, got" not in message:
        return ""
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            width = len(next(reader))
            for row in reader:
                if row and len(row) != width:
                    return (f" (line {reader.line_num} of the file holds {len(row)} cells, the header "
                            f"{width}: a missing or extra comma, or a comma inside an unquoted value)")
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration):
        pass
    return ""


def category_texts(column: Any) -> Any:
    """A categorical text column as its categories are compared: boolean spellings folded, integers
    written as floats made integers (``_fold_booleans``, ``integer_texts``)."""
    return integer_texts(_fold_booleans(column))


def _fold_booleans(column: Any) -> Any:
    """A categorical text column with boolean spellings made one: Parquet's booleans read as text are
    "true"/"false", pandas writes "True"/"False" to CSV, R "TRUE"/"FALSE"; all become "true"/"false", so
    one table's categories match another file's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lower = pc.utf8_lower(column)
    return pc.if_else(pc.is_in(lower, value_set=pa.array(["true", "false"])), lower, column)


def text_values(column: Any, name: str, where: str) -> np.ndarray:
    """A text column as an object array of str (N,); a missing (null) cell is an error naming its row."""
    if column.null_count:
        i = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where}: row {i + 1}: column {name!r} is empty")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


# A cell a CSV reader takes for a number (the others make the column text).
_NUMBER = r"(?i)^\s*[+-]?((\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)\s*$"


def _first_non_number(column: Any) -> str:
    """``row N: 'value'`` of the first cell of a text column that is not a number (rows from 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        valid = column.drop_null()
        if pa.types.is_temporal(column.type) and len(valid):  # the value as the file shows it, not its repr
            return f"dates or times, e.g. {str(valid[0].as_py())!r}"
        return f"e.g. {valid[0].as_py()!r}" if len(valid) else "no values"
    is_number = pc.fill_null(pc.match_substring_regex(column, _NUMBER), True)
    bad = np.flatnonzero(~is_number.to_numpy(zero_copy_only=False))
    if not bad.size:
        return "no values"
    return f"row {int(bad[0]) + 1}: {column[int(bad[0])].as_py()!r}"


def _check_numeric_type(col: Any, name: str, where: str, fix: str | None = None) -> None:
    """Refuse a column that is not numeric; ``fix``: what to do about it (default: the declaration's
    remedies, for a table being declared)."""
    import pyarrow as pa

    typ = col.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)
            or pa.types.is_decimal(typ)):
        default = "declare it in 'categorical' to one-hot encode it, or in 'drop_columns' to leave it out"
        if pa.types.is_temporal(typ):  # one category per time stamp would be no feature at all
            default = ("convert it to numbers first (e.g. seconds since 1970, or the hour of the day), or "
                       "list it in 'drop_columns' to leave it out")
        raise DataError(f"{where}: column {name!r} is not numeric ({_first_non_number(col)}); "
                        + (fix or default))


def _warn_if_row_number(col: Any, name: str, where: str) -> None:
    """Warn about a numeric column that counts the rows (k, k+1, k+2, ...): a row number or an id, which as
    a feature would make the file's order part of the model."""
    if col.null_count or len(col) < 20:
        return
    values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.all(np.diff(values) == 1.0):
        warnings.warn(f"{where}: numeric column {name!r} counts the rows ({values[0]:g}, {values[1]:g}, "
                      f"{values[2]:g}, ...): a row number or an id rather than a feature? list it in "
                      "'drop_columns' (adgan score --keep carries it beside the scores)", InputWarning,
                      stacklevel=3)


def _numeric(table: Any, name: str, where: str) -> np.ndarray:
    """A numeric column of rows to encode as float64 (N,); refuses text, empty cells and non-finite values."""
    col = table.column(name)
    # (the model's layout is fixed: at this point the column can only be given as the numbers it was)
    _check_numeric_type(col, name, where, fix="the model was trained on it as a numeric column: give it "
                        "numbers, as in the training table")
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where}: row {i + 1}: column {name!r} is empty")
    values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: row {i + 1}: column {name!r} is not finite ({values[i]})")
    return values


@dataclass(frozen=True)
class TableSchema:
    """The encoded layout of a user table.

    Attributes:
        label_column: Name of the label column (dropped from new input when present).
        numeric: Numeric feature columns, file order.
        categories: ``(column, values)`` per categorical column, declaration order, values sorted.
        drop_columns: Columns that are neither features nor label (dropped when present).
    """

    label_column: str
    numeric: tuple[str, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    drop_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Encoded column names: the numeric columns, then ``"<column>=<value>"`` per category."""
        return self.numeric + tuple(f"{c}={v}" for c, values in self.categories for v in values)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.categories)

    def fitted_on(self, x: np.ndarray) -> tuple[TableSchema, np.ndarray]:
        """The schema of the rows ``x`` (encoded with this schema: (n, len(columns))) alone: the category
        values they hold (a value no row of ``x`` holds is then encoded as none of the known, as new input's
        unseen values are), with the indices (D',) of this schema's columns that it keeps."""
        n_numeric = len(self.numeric)
        present = x[:, n_numeric:].any(axis=0)
        categories, start = [], 0
        for name, values in self.categories:
            held = present[start:start + len(values)]
            categories.append((name, tuple(v for v, h in zip(values, held, strict=True) if h)))
            start += len(values)
        keep = np.concatenate([np.arange(n_numeric), n_numeric + np.flatnonzero(present)])
        return replace(self, categories=tuple(categories)), keep

    def to_dict(self) -> dict[str, Any]:
        """JSON-able facts for ``prepare_input``; lists only, so no JSON writer can reorder them."""
        return {"format": FORMAT, "label_column": self.label_column, "numeric": list(self.numeric),
                "categories": [[c, list(v)] for c, v in self.categories],
                "drop_columns": list(self.drop_columns), "columns": list(self.columns),
                "n_features": len(self.columns)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        """Rebuild from ``to_dict``; refuses a schema whose blocks do not rebuild its stored ``columns``."""
        try:
            schema = cls(str(d["label_column"]), tuple(d["numeric"]),
                         tuple((str(c), tuple(str(v) for v in vals)) for c, vals in d["categories"]),
                         tuple(d.get("drop_columns", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"checkpoint's table schema is incomplete or malformed ({exc!r})") from None
        if "columns" in d and list(schema.columns) != list(d["columns"]):
            raise DataError("checkpoint's table schema: its categories do not rebuild its stored 'columns'; "
                            "raw rows cannot be encoded safely")
        return schema


MANY_CATEGORIES = 50  # a categorical column with more values, and more than one per two rows: warned about


def fit_schema(table: Any, label_column: str, categorical: Sequence[str], drop_columns: Sequence[str],
               where: str) -> TableSchema:
    """The schema of a training table: numeric columns in file order, categories sorted per column.

    Raises:
        DataError: The label, a categorical or a dropped column is missing (listing the columns), or a
            feature column is not numeric and not declared categorical (naming it and an example value).
    """
    names = list(table.column_names)
    unnamed = [i + 1 for i, n in enumerate(names) if _is_index_name(n) and n not in drop_columns]
    if unnamed:
        raise DataError(
            f"{where}: column {unnamed[0]} has no name ({names[unnamed[0] - 1]!r}): often a row index that "
            "pandas wrote (to_csv / to_parquet without index=False), which would be a feature; name it, or "
            f"list {names[unnamed[0] - 1]!r} in 'drop_columns'"
        )
    for key, wanted in (("label_column", [label_column]), ("categorical", categorical),
                        ("drop_columns", drop_columns)):
        for name in wanted:
            if name not in names:
                raise DataError(f"{where}: no column {name!r} (declared in {key!r}); the columns are: "
                                f"{', '.join(names)}{separator_hint(names)}")
    skip = {label_column, *categorical, *drop_columns}
    numeric = tuple(n for n in names if n not in skip)
    for name in numeric:
        _check_numeric_type(table.column(name), name, where)
        _warn_if_row_number(table.column(name), name, where)
    cats = []
    for name in categorical:
        values = text_values(category_texts(table.column(name)), name, where)
        cats.append((name, tuple(sorted(set(values.tolist())))))
        n_values = len(cats[-1][1])
        if n_values > MANY_CATEGORIES and n_values * 2 > table.num_rows:
            warnings.warn(f"{where}: categorical column {name!r} holds {n_values} different values in "
                          f"{table.num_rows} rows, each becoming a feature of its own: an identifier rather "
                          "than a category? list it in 'drop_columns'", InputWarning, stacklevel=2)
    return TableSchema(label_column, numeric, tuple(cats), tuple(drop_columns))


def encode_table(table: Any, schema: TableSchema, where: str, *, strict: bool = True,
                 training: bool = False) -> np.ndarray:
    """Encode a table's rows with ``schema``: float64 (N, len(schema.columns)) (scaled, then cast to the
    models' float32 by the caller: a column such as a timestamp keeps its differences).

    Args:
        table: ``pyarrow.Table`` with the schema's feature columns (any order); the label and dropped
            columns may be present and are ignored.
        schema: The layout (from ``fit_schema`` or a checkpoint).
        where: The file or input named in errors.
        strict: Refuse category values outside the schema; False encodes them as none of the known and
            warns (``UnseenCategoryWarning``), naming the column, the values and the number of rows.
        training: The table the schema was fitted on (no unseen values possible; no column checks).

    Raises:
        DataError: Missing or unknown columns (listing them), non-numeric, empty or non-finite values in
            numeric columns, empty categorical cells, or (strict) unseen categories.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(table.column_names)
    needed = list(schema.numeric) + list(schema.categorical)
    missing = [n for n in needed if n not in names]
    if missing:
        raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))} of the training table; expected the columns "
                        f"{', '.join(needed)}{separator_hint(names)}{header_hint(names)}"
                        f"{_spaced_hint(missing, names)}")
    ignored = {schema.label_column, *schema.drop_columns}
    extra = [n for n in names if n not in needed and n not in ignored]
    if extra and not training:
        raise DataError(f"{where}: column{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                        f"{'were' if len(extra) > 1 else 'was'} not in the training table; expected the "
                        f"columns {', '.join(needed)}{_index_hint(extra[0])} (an id to carry beside the "
                        "scores: adgan score --keep COLUMN)")
    n = table.num_rows
    out = np.zeros((n, len(schema.columns)), dtype=np.float64)
    for j, name in enumerate(schema.numeric):
        out[:, j] = _numeric(table, name, where)
    offset = len(schema.numeric)
    unseen: list[UnseenValues] = []
    for name, values in schema.categories:
        col = table.column(name)
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        col = category_texts(col)
        text_values(col, name, where)  # empty cells are errors, not categories
        # (the stored categories folded too: a checkpoint written before folding kept "True" or "75001.0")
        known_values = category_texts(pa.array(list(values), type=pa.string()))
        col = _flags_as_known(col, known_values)
        found = pc.index_in(col, value_set=known_values)
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.flatnonzero(codes < 0)
        if bad.size:
            unseen.append(count_unseen(name, col.take(pa.array(bad)).to_pylist(), bad, values, n))
        known = np.flatnonzero(codes >= 0)
        out[known, offset + codes[known]] = 1.0
        offset += len(values)
    handle_unseen(where, unseen, strict, "the categories of the training rows")
    return out


def _flags_as_known(column: Any, known: Any) -> Any:
    """A categorical column's 0/1 as the "false"/"true" its training file wrote (or true/false as its 0/1):
    one flag, whichever way a feed writes it. Other columns, and other values, are returned as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    spelled = sorted(known.to_pylist())
    if spelled == ["false", "true"]:
        to = {"0": "false", "1": "true"}
    elif spelled == ["0", "1"]:
        to = {"false": "0", "true": "1"}
    else:
        return column
    for old, new in to.items():
        column = pc.if_else(pc.equal(column, old), pa.scalar(new, pa.string()), column)
    return column


def table_from_frame(x: Any) -> Any:
    """A ``pyarrow.Table`` from a pandas DataFrame or a pyarrow Table (returned as is)."""
    import pyarrow as pa

    if isinstance(x, pa.Table):
        return x
    return pa.Table.from_pandas(x, preserve_index=False)

