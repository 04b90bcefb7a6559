"""KDD Cup 99: CSV parsing (41 features + label) and the fixed 121-column one-hot encoding.

The published EGBAD code one-hot encodes seven columns with ``pandas.get_dummies`` on the 10% file and keeps
the remaining 34 numeric columns in file order, the dummies appended after them: 34 + 3 + 66 + 11 + 2 + 2 + 1
+ 2 = 121 columns. Here the category lists are constants (``CATEGORIES``, read once from the real 10% file,
sorted as ``get_dummies`` sorts them), so the columns are the same for any file, even one lacking a category.
In training data a value outside the schema (e.g. ``is_host_login=1``, absent from the 10% file) is a
``DataError`` naming the row, column and value. New rows to score (``strict=False``, the default of
``prepare_input``/``prepare_file``) encode such a value as "none of the known" (all zeros in its one-hot
block) and count it in an ``UnseenCategoryWarning`` (``adgan.data.unseen``); ``strict=True`` refuses them.

The stored schema (``KddSchema.to_dict``, kept in every checkpoint) lists the categories as ``[column,
[values...]]`` pairs: checkpoints are written with ``json.dumps(sort_keys=True)``, which reorders the keys of
a dict, and the one-hot blocks must keep their order. Older checkpoints stored a dict; ``from_dict`` takes
their block order from the stored ``columns`` list.

Files are read with ``pyarrow.csv`` (about a second for the 494,021-row file); on any parse failure the file
is scanned again line by line to name the first bad line precisely. Parsed files are cached per process,
keyed by path, size and mtime, because sweeps load the same file many times.
"""

from __future__ import annotations

import csv
import functools
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adgan.data.formats import open_text
from adgan.data.unseen import UnseenValues, count_unseen, handle_unseen
from adgan.errors import DataError

FEATURES: tuple[str, ...] = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment",
    "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted",
    "num_root", "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds",
    "is_host_login", "is_guest_login", "count", "srv_count", "serror_rate", "srv_serror_rate",
    "rerror_rate", "srv_rerror_rate", "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate",
    "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)
LABEL = "label"
ANOMALY_LABEL = "normal."  # normal traffic is the minority, hence the anomaly (Zenati et al.)
# The same class as some copies of the file spell it (without the dot of the original distribution).
ANOMALY_LABELS = (ANOMALY_LABEL, "normal")

# Category lists of the one-hot columns, from kddcup.data_10_percent (sha256 7bfaa8ce...), sorted.
CATEGORIES: dict[str, tuple[str, ...] | tuple[int, ...]] = {
    "protocol_type": ("icmp", "tcp", "udp"),
    "service": (
        "IRC", "X11", "Z39_50", "auth", "bgp", "courier", "csnet_ns", "ctf", "daytime", "discard", "domain",
        "domain_u", "echo", "eco_i", "ecr_i", "efs", "exec", "finger", "ftp", "ftp_data", "gopher",
        "hostnames", "http", "http_443", "imap4", "iso_tsap", "klogin", "kshell", "ldap", "link", "login",
        "mtp", "name", "netbios_dgm", "netbios_ns", "netbios_ssn", "netstat", "nnsp", "nntp", "ntp_u",
        "other", "pm_dump", "pop_2", "pop_3", "printer", "private", "red_i", "remote_job", "rje", "shell",
        "smtp", "sql_net", "ssh", "sunrpc", "supdup", "systat", "telnet", "tftp_u", "tim_i", "time", "urh_i",
        "urp_i", "uucp", "uucp_path", "vmnet", "whois",
    ),
    "flag": ("OTH", "REJ", "RSTO", "RSTOS0", "RSTR", "S0", "S1", "S2", "S3", "SF", "SH"),
    "land": (0, 1),
    "logged_in": (0, 1),
    "is_host_login": (0,),
    "is_guest_login": (0, 1),
}


@dataclass(frozen=True)
class KddSchema:
    """Column layout of the encoded features: ``numeric`` columns, then one-hot blocks of ``categories``.

    Integer-valued categories (``land``...) are matched numerically, so ``1``, ``1.0`` and ``"1"`` agree.
    """

    categories: dict[str, tuple[Any, ...]]

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(self.categories)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f for f in FEATURES if f not in self.categories)

    @property
    def columns(self) -> tuple[str, ...]:
        """The encoded column names, ``get_dummies`` style (``"service-http"``)."""
        dummies = tuple(f"{c}-{v}" for c, vals in self.categories.items() for v in vals)
        return self.numeric + dummies

    def to_dict(self) -> dict[str, Any]:
        """The schema as JSON-able facts; ``categories`` is a list of ``[column, [values]]`` pairs, in block
        order, so that no JSON writer (``sort_keys=True``) can reorder the blocks."""
        return {"format": "kdd99", "raw_columns": list(FEATURES), "numeric": list(self.numeric),
                "categories": [[c, list(v)] for c, v in self.categories.items()],
                "columns": list(self.columns)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KddSchema:
        """Rebuild a schema stored by ``to_dict``, by this or an older version.

        Older checkpoints stored ``categories`` as a dict, which ``json.dumps(sort_keys=True)`` wrote in
        alphabetical order; their block and value order is taken from the stored ``columns`` list. The
        rebuilt schema's columns must equal the stored ``columns`` where those are present.

        Raises:
            DataError: The order cannot be recovered (a dict without ``columns``), or the categories and
                ``columns`` disagree: encoding would then silently put values into the wrong columns.
        """
        cats = d.get("categories")
        columns = d.get("columns")
        if isinstance(cats, list):
            schema = cls({str(c): tuple(v) for c, v in cats})
        elif isinstance(cats, dict):
            if not isinstance(columns, list):
                raise DataError(
                    "checkpoint's KDD99 schema stores its categories without their order (no 'columns' "
                    "list); raw rows cannot be encoded safely. Re-train the model, or pass rows already "
                    "encoded in its one-hot model space (.npy)"
                )
            position = {name: i for i, name in enumerate(columns)}
            blocks = []
            for col, values in cats.items():
                keyed = [(position.get(f"{col}-{v}"), v) for v in values]
                if any(p is None for p, _ in keyed):
                    raise DataError(f"checkpoint's KDD99 schema: the stored columns lack a column of "
                                    f"category {col!r}; raw rows cannot be encoded safely")
                keyed.sort(key=lambda pv: pv[0])
                blocks.append((keyed[0][0], col, tuple(v for _, v in keyed)))
            schema = cls({col: values for _, col, values in sorted(blocks, key=lambda b: b[0])})
        else:
            raise DataError(f"checkpoint's KDD99 schema: 'categories' must be a list of [column, values] "
                            f"pairs, got {type(cats).__name__}")
        if isinstance(columns, list) and list(schema.columns) != columns:
            raise DataError("checkpoint's KDD99 schema: its categories do not rebuild its stored 'columns'; "
                            "raw rows cannot be encoded safely")
        return schema


SCHEMA = KddSchema(CATEGORIES)
N_COLUMNS = len(SCHEMA.columns)  # 121


@dataclass(frozen=True)
class KddRows:
    """Parsed rows before encoding.

    Attributes:
        numeric: float32 (N, 34), the numeric features in file order.
        codes: int16 (N, 7), each categorical value's index in its category list; -1 for a value outside
            the list (only when read with ``strict=False``).
        is_anomaly: bool (N,), label ``normal.`` (or ``normal``); None when the rows had no label column.
        unseen: The columns holding values outside the schema, with counts (``strict=False`` only).
    """

    numeric: np.ndarray
    codes: np.ndarray
    is_anomaly: np.ndarray | None
    unseen: tuple[UnseenValues, ...] = ()

    def __len__(self) -> int:
        return int(self.numeric.shape[0])


def encode(rows: KddRows, schema: KddSchema = SCHEMA, idx: np.ndarray | None = None) -> np.ndarray:
    """One-hot encode ``rows`` (optionally only rows ``idx``) into float32 (n, len(schema.columns)).

    A code of -1 (a value outside the schema, read with ``strict=False``) leaves its block all zeros.
    """
    numeric = rows.numeric if idx is None else rows.numeric[idx]
    codes = rows.codes if idx is None else rows.codes[idx]
    out = np.zeros((numeric.shape[0], len(schema.columns)), dtype=np.float32)
    out[:, : numeric.shape[1]] = numeric
    offset = numeric.shape[1]
    for j, values in enumerate(schema.categories.values()):
        known = np.flatnonzero(codes[:, j] >= 0)
        out[known, offset + codes[known, j]] = 1.0
        offset += len(values)
    return out


# ----- reading files -----
def _count_columns(path: Path) -> int:
    try:
        with open_text(path) as fh:
            for row in csv.reader(fh):
                if row:
                    return len(row)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated gzip file ({exc})") from None
    raise DataError(f"{path}: empty file, expected KDD99 rows of 41 features + label")


def _diagnose(path: Path, n_cols: int, schema: KddSchema) -> str:
    """Scan ``path`` line by line for the first row pyarrow refused; slow, used only on errors."""
    numeric_idx = [FEATURES.index(c) for c in schema.numeric]
    try:
        with open_text(path) as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row:
                    continue
                if len(row) != n_cols:
                    return (f"{path}, line {lineno}: expected {n_cols} comma-separated values "
                            f"(41 features{' + label' if n_cols == 42 else ''}), got {len(row)}")
                for j in numeric_idx:
                    try:
                        float(row[j])
                    except ValueError:
                        header = (": it reads like a header row, and raw KDD99 rows have none (remove it)"
                                  if lineno == 1 and row[j].strip().lower() in FEATURES else "")
                        return (f"{path}, line {lineno}: column {FEATURES[j]!r} must be a number, "
                                f"got {row[j]!r}{header}")
    except (EOFError, OSError, zlib.error) as exc:
        return f"{path}: damaged or truncated gzip file ({exc})"
    return ""


def _read_table(path: Path, n_cols: int, types: dict[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = list(FEATURES + (LABEL,))[:n_cols]
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        with pa.input_stream(str(path), compression="gzip" if gz else None) as stream:
            return pcsv.read_csv(
                stream,
                read_options=pcsv.ReadOptions(column_names=names),
                convert_options=pcsv.ConvertOptions(column_types=types, null_values=[],
                                                    strings_can_be_null=False),
            )
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: {exc}") from None


def read_kdd_file(path: str | os.PathLike[str], schema: KddSchema = SCHEMA,
                  require_label: bool = True, *, strict: bool = True) -> KddRows:
    """Parse a KDD99 CSV file (gzip'd or plain, no header) into ``KddRows``.

    Args:
        path: The file; rows of 41 features + label, or 41 features when ``require_label`` is False.
        schema: Category lists for the one-hot columns.
        require_label: Refuse files without the label column.
        strict: Refuse a category outside ``schema`` (training data). False (new rows to score): code it
            -1 and list it in ``KddRows.unseen``; the caller reports it (``adgan.data.unseen``).

    Raises:
        DataError: Wrong column count, a non-numeric or non-finite value in a numeric column, or (strict) a
            category outside ``schema``, naming the file, line/row, column and value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    path = Path(path)
    n_cols = _count_columns(path)
    if n_cols not in ((42,) if require_label else (41, 42)):
        expected = "42 comma-separated values (41 features + label)" if require_label else \
            "41 comma-separated features, or 42 with the label last"
        raise DataError(f"{path}, line 1: expected {expected}, got {n_cols}")
    types: dict[str, Any] = {c: pa.float64() for c in schema.numeric}
    for c, v in schema.categories.items():
        types[c] = pa.float64() if isinstance(v[0], int) else pa.string()
    try:
        table = _read_table(path, n_cols, types)
    except DataError as exc:
        raise DataError(_diagnose(path, n_cols, schema) or str(exc)) from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    numeric = np.empty((table.num_rows, len(schema.numeric)), dtype=np.float32)
    for k, col in enumerate(schema.numeric):
        numeric[:, k] = table.column(col).to_numpy()
    _check_finite(numeric, schema, str(path))
    codes = np.empty((table.num_rows, len(schema.categories)), dtype=np.int16)
    unseen: list[UnseenValues] = []
    for j, (col, values) in enumerate(schema.categories.items()):
        value_set = pa.array([float(v) for v in values] if isinstance(values[0], int) else list(values))
        found = pc.index_in(table.column(col), value_set=value_set)
        if found.null_count:
            bad = np.flatnonzero(found.is_null().to_numpy(zero_copy_only=False))
            if strict:
                _unknown(str(path), int(bad[0]), col, table.column(col)[int(bad[0])].as_py(), values)
            unseen.append(count_unseen(col, table.column(col).take(pa.array(bad)).to_pylist(), bad, values))
        codes[:, j] = found.fill_null(-1).to_numpy()
    is_anomaly = None
    if n_cols == 42:
        labels = table.column(LABEL)
        is_anomaly = pc.is_in(labels, value_set=pa.array(ANOMALY_LABELS)).to_numpy(zero_copy_only=False)
        if require_label and not is_anomaly.any():
            # Training data without its anomaly class: say what the labels are, not "0 anomalies" later.
            seen = pc.value_counts(labels).to_pylist()
            common = sorted(seen, key=lambda c: -c["counts"])[:5]
            raise DataError(f"{path}: no row labelled {ANOMALY_LABEL!r} (the anomaly class: normal traffic) "
                            "in the label column (the 42nd); most common labels: "
                            + ", ".join(f"{c['values']!r} ({c['counts']})" for c in common))
    return KddRows(numeric, codes, is_anomaly, tuple(unseen))


def report_unseen(where: str, rows: KddRows, strict: bool) -> None:
    """Warn about (or, ``strict``, refuse) the unseen categories of rows read with ``strict=False``."""
    handle_unseen(where, rows.unseen, strict, "the KDD99 schema")


def _check_finite(numeric: np.ndarray, schema: KddSchema, where: str) -> None:
    bad = ~np.isfinite(numeric)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{where}: row {i + 1}: column {schema.numeric[j]!r} is not finite ({numeric[i, j]})")


def _unknown(where: str, i: int, col: str, value: Any, values: tuple[Any, ...]) -> None:
    handle_unseen(where, [count_unseen(col, [value], [i], values)], True, "the KDD99 schema")


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, size: int, mtime_ns: int) -> KddRows:
    rows = read_kdd_file(path)
    for arr in (rows.numeric, rows.codes, rows.is_anomaly):
        if arr is not None:
            arr.flags.writeable = False
    return rows


def load_kdd_file(path: str | os.PathLike[str]) -> KddRows:
    """``read_kdd_file`` with labels required, cached per process by (path, size, mtime); read-only arrays."""
    st = os.stat(path)
    return _load_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


# ----- in-memory rows (prepare_input) -----
def rows_from_array(x: np.ndarray, schema: KddSchema = SCHEMA, where: str = "input", *,
                    strict: bool = True) -> KddRows:
    """Parse raw rows (N, 41) or (N, 42) (label last, ignored) of strings/objects into ``KddRows``.

    ``strict=False``: a category outside ``schema`` is coded -1 and listed in ``KddRows.unseen``.

    Raises:
        DataError: Wrong shape, a non-numeric value in a numeric column or (strict) an unknown category.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] not in (41, 42):
        raise DataError(f"{where}: expected raw KDD99 rows of shape (N, 41) (or (N, 42) with the label), "
                        f"got {x.shape}")
    numeric = np.empty((x.shape[0], len(schema.numeric)), dtype=np.float32)
    for k, col in enumerate(schema.numeric):
        numeric[:, k] = _as_float(x[:, FEATURES.index(col)], col, where)
    _check_finite(numeric, schema, where)
    codes = np.empty((x.shape[0], len(schema.categories)), dtype=np.int16)
    unseen: list[UnseenValues] = []
    for j, (col, values) in enumerate(schema.categories.items()):
        raw = x[:, FEATURES.index(col)]
        if isinstance(values[0], int):
            vals, cats = _as_float(raw, col, where), np.asarray(values, dtype=np.float64)
        else:
            vals, cats = raw.astype(str), np.asarray(values, dtype=str)
        order = np.argsort(cats, kind="stable")
        pos = np.clip(np.searchsorted(cats[order], vals), 0, len(cats) - 1)
        ok = cats[order][pos] == vals
        if not ok.all():
            bad = np.flatnonzero(~ok)
            shown = [v.item() if hasattr(v, "item") else v for v in vals[bad]]
            if strict:
                _unknown(where, int(bad[0]), col, shown[0], values)
            unseen.append(count_unseen(col, shown, bad, values))
        codes[:, j] = np.where(ok, order[pos], -1)
    return KddRows(numeric, codes, None, tuple(unseen))


def _as_float(col: np.ndarray, name: str, where: str) -> np.ndarray:
    try:
        return np.asarray(col, dtype=np.float64)
    except (TypeError, ValueError):
        for i, v in enumerate(col):  # error path only: find the offending value
            try:
                float(v)
            except (TypeError, ValueError):
                raise DataError(f"{where}: row {i + 1}: column {name!r} must be a number, "
                                f"got {v!r}") from None
        raise DataError(f"{where}: column {name!r} must be numeric") from None


def read_kdd_csv_rows(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a KDD99 CSV (gzip'd or plain, no header) as raw rows for ``prepare_input``.

    Returns:
        object array (N, 41) or (N, 42) of strings, exactly as in the file. Memory grows by about 2.5 kB a
        row; for large files ``prepare_file`` encodes straight from the file instead.
    """
    import pyarrow as pa

    path = Path(path)
    n_cols = _count_columns(path)
    if n_cols not in (41, 42):
        raise DataError(f"{path}, line 1: expected 41 or 42 comma-separated values, got {n_cols}")
    names = list(FEATURES + (LABEL,))[:n_cols]
    try:
        table = _read_table(path, n_cols, {c: pa.string() for c in names})
    except DataError as exc:
        raise DataError(_diagnose(path, n_cols, SCHEMA) or str(exc)) from None
    out = np.empty((table.num_rows, n_cols), dtype=object)
    for j in range(n_cols):
        out[:, j] = table.column(j).to_numpy(zero_copy_only=False)
    return out
