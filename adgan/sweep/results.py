"""Sweep results as Parquet files: ``epochs.parquet``, ``trials.parquet``, ``best.parquet``.

Each file has a fixed Arrow schema (below), a ``schema_version`` column and the same number in the file's
metadata (``adgan.schema_version``). Version 2 adds flat columns so that pandas and DuckDB users need no
JSON parsing: ``family`` (gan / baseline), ``class_name``, one ``param_<name>`` column per searched
hyperparameter of the sweep (typed from its search distribution), the split sizes behind the chance level
(``n_val``, ``n_val_anomalies``, ``n_test_anomalies``) and ``reported_at`` as a UTC timestamp.
``read_table`` reads version-1 files by upgrading their rows (see ``upgrade_v1``).

Files are rewritten whole from the in-memory table after each change
(a temporary sibling, then ``os.replace``), so a reader or an interrupted sweep always sees a complete file.
Rows are keyed (epochs by ``(trial_id, epoch)``, trials by ``trial_id``, best rows by ``group_id``); writing
a row whose key exists replaces it, which is what makes a resumed sweep neither duplicate nor lose rows.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from adgan.errors import DataError

SCHEMA_VERSION = 2
PARAM_PREFIX = "param_"
# Version-1 files predate the ``family`` column; they could only hold these seven models.
V1_FAMILIES = {"ganomaly": "gan", "egbad": "gan", "anogan": "gan",
               "knn": "baseline", "iforest": "baseline", "pca": "baseline", "ocsvm": "baseline"}

_GROUP = [
    ("sweep", pa.string()),
    ("group_id", pa.string()),
    ("model", pa.string()),
    ("dataset", pa.string()),
    ("anomaly_class", pa.int32()),
    ("loss_case", pa.string()),
    ("seed", pa.int32()),
    ("family", pa.string()),  # gan | baseline (the detector class's declared family)
    ("class_name", pa.string()),
]

EPOCHS = pa.schema(
    [
        ("schema_version", pa.int32()),
        *_GROUP,
        ("trial_id", pa.string()),
        ("epoch", pa.int32()),
        ("losses", pa.string()),  # JSON object {loss name: value}; names differ between models
        ("val_auprc", pa.float64()),
        ("val_auroc", pa.float64()),
        ("val_auprc_trapz", pa.float64()),
        ("best_val_auprc", pa.float64()),
        ("is_best", pa.bool_()),
        ("epoch_seconds", pa.float64()),
        ("eval_seconds", pa.float64()),
        ("samples_per_s", pa.float64()),
        ("node_ip", pa.string()),
        ("reported_at", pa.timestamp("ms", tz="UTC")),
    ]
)

TRIALS = pa.schema(
    [
        ("schema_version", pa.int32()),
        *_GROUP,
        ("trial_id", pa.string()),
        ("status", pa.string()),  # completed | stopped early | diverged | errored
        ("message", pa.string()),
        ("params", pa.string()),  # JSON: the searched hyperparameters
        ("config", pa.string()),  # JSON: the full adgan.train config
        ("best_val_auprc", pa.float64()),
        ("best_val_auroc", pa.float64()),
        ("best_epoch", pa.int32()),
        ("epochs_run", pa.int32()),
        ("max_epochs", pa.int32()),
        ("wall_seconds", pa.float64()),
        ("fit_seconds", pa.float64()),
        ("score_seconds", pa.float64()),
        ("node_ip", pa.string()),
        ("node_id", pa.string()),
        ("data_source", pa.string()),
        ("data_sha256", pa.string()),
        ("data_n_samples", pa.int64()),
        ("n_train", pa.int64()),
        ("n_val", pa.int64()),
        ("n_val_anomalies", pa.int64()),
        ("code_version", pa.string()),
        ("checkpoint", pa.string()),
    ]
)

BEST = pa.schema(
    [
        ("schema_version", pa.int32()),
        *_GROUP,
        ("trial_id", pa.string()),
        ("params", pa.string()),
        ("config", pa.string()),
        ("val_auprc", pa.float64()),
        ("val_auroc", pa.float64()),
        ("best_epoch", pa.int32()),
        ("test_auprc", pa.float64()),
        ("test_auroc", pa.float64()),
        ("test_auprc_trapz", pa.float64()),
        ("test_f1", pa.float64()),
        ("test_precision", pa.float64()),
        ("test_recall", pa.float64()),
        ("test_threshold", pa.float64()),
        ("test_q", pa.float64()),
        ("n_test", pa.int64()),
        ("n_test_anomalies", pa.int64()),
        ("n_train", pa.int64()),
        ("n_val", pa.int64()),
        ("n_val_anomalies", pa.int64()),
        ("fit_seconds", pa.float64()),
        ("n_trials", pa.int32()),
        ("n_completed", pa.int32()),
        ("n_stopped", pa.int32()),
        ("n_diverged", pa.int32()),
        ("n_errored", pa.int32()),
        ("checkpoint", pa.string()),
        ("data_source", pa.string()),
        ("code_version", pa.string()),
    ]
)

TABLES: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "epochs": (EPOCHS, ("trial_id", "epoch")),
    "trials": (TRIALS, ("trial_id",)),
    "best": (BEST, ("group_id",)),
}


def _clean(value: Any, typ: pa.DataType) -> Any:
    """Coerce one value to the column's type; NaN/inf floats and missing values become null."""
    if value is None:
        return None
    if pa.types.is_timestamp(typ):
        if isinstance(value, datetime.datetime):
            return value
        v = float(value)  # unix seconds, as Tune reports them
        return datetime.datetime.fromtimestamp(v, datetime.UTC) if math.isfinite(v) else None
    if pa.types.is_floating(typ):
        v = float(value)
        return v if math.isfinite(v) else None
    if pa.types.is_integer(typ):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return int(value)
    if pa.types.is_boolean(typ):
        return bool(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def param_type(choices_or_kind: str | Iterable[Any]) -> pa.DataType:
    """The Arrow type of a ``param_<name>`` column: from a search distribution's kind (``loguniform``,
    ``uniform``, ``int``) or, for a categorical, from its choices (all bool / all int / all numbers /
    else string)."""
    if isinstance(choices_or_kind, str):
        return pa.int64() if choices_or_kind == "int" else pa.float64()
    values = list(choices_or_kind)
    if values and all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _inferred_type(value: Any) -> pa.DataType:
    """The Arrow type of a parameter value met without a declared type."""
    return param_type([value])


def schema_of(name: str, params: Mapping[str, pa.DataType]) -> pa.Schema:
    """Table ``name``'s schema: the fixed columns, then one ``param_<p>`` column per parameter (sorted)."""
    base, _ = TABLES[name]
    return pa.schema([*base, *((f"{PARAM_PREFIX}{p}", t) for p, t in sorted(params.items()))])


def _param_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's searched hyperparameters: its ``params`` (a dict, or the JSON text Parquet holds)."""
    params = row.get("params")
    if isinstance(params, str):
        params = json.loads(params) if params else {}
    return dict(params or {})


class ResultsStore:
    """The three Parquet tables of one sweep, kept in memory and rewritten atomically.

    Args:
        directory: ``results/<sweep-name>``; existing files are read back (resume).
        params: Arrow type of each searched hyperparameter (its ``param_<name>`` column); parameters met
            in rows without a declared type get one from their value.
    """

    def __init__(
        self, directory: str | os.PathLike[str], params: Mapping[str, pa.DataType] | None = None
    ) -> None:
        self.dir = Path(directory)
        self.params: dict[str, pa.DataType] = dict(params or {})
        self.rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {name: {} for name in TABLES}
        self._dirty: set[str] = set()
        self._last_flush = 0.0
        for name in TABLES:
            table = read_arrow(self.dir, name, missing_ok=True)
            if table is None:
                continue
            for field in table.schema:
                if field.name.startswith(PARAM_PREFIX):
                    self.params.setdefault(field.name[len(PARAM_PREFIX):], field.type)
            for row in table.to_pylist():
                self._put(name, row)

    def _put(self, name: str, row: Mapping[str, Any]) -> None:
        _, key = TABLES[name]
        values = {f"{PARAM_PREFIX}{p}": v for p, v in _param_values(row).items()}
        for column, value in values.items():
            if column[len(PARAM_PREFIX):] not in self.params and value is not None:
                self.params[column[len(PARAM_PREFIX):]] = _inferred_type(value)
        values.update(row)
        clean = {f.name: _clean(values.get(f.name), f.type) for f in schema_of(name, self.params)}
        clean["schema_version"] = SCHEMA_VERSION
        self.rows[name][tuple(clean[k] for k in key)] = clean

    def upsert(self, name: str, row: Mapping[str, Any]) -> None:
        """Insert ``row`` into table ``name`` or replace the row with the same key."""
        self._put(name, row)
        self._dirty.add(name)

    def drop_trial(self, trial_id: str, from_epoch: int = 1) -> None:
        """Remove a trial's row and its epoch rows from ``from_epoch`` on (it continues from there)."""
        for name in ("epochs", "trials"):
            keys = [
                k for k, row in self.rows[name].items()
                if row["trial_id"] == trial_id and (name == "trials" or int(row["epoch"]) >= from_epoch)
            ]
            for k in keys:
                del self.rows[name][k]
            if keys:
                self._dirty.add(name)

    def table(self, name: str) -> list[dict[str, Any]]:
        """The rows of ``name`` in key order."""
        return [self.rows[name][k] for k in sorted(self.rows[name], key=_sort_key)]

    def flush(self, *, min_interval: float = 0.0) -> None:
        """Write every changed table (not more often than ``min_interval`` seconds)."""
        if not self._dirty or time.monotonic() - self._last_flush < min_interval:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(self._dirty):
            schema = schema_of(name, self.params)
            table = pa.Table.from_pylist(self.table(name), schema=schema).replace_schema_metadata(
                {"adgan.schema_version": str(SCHEMA_VERSION), "adgan.table": name}
            )
            path = self.dir / f"{name}.parquet"
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        self._dirty.clear()
        self._last_flush = time.monotonic()


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in key)


def read_parquet(path: str | os.PathLike[str]) -> pa.Table:
    """A Parquet file read in one go: ``pq.read_table(path)`` opens the path again for the data after
    reading the footer, so a file replaced in between (a sweep writing as results arrive) mixes two
    versions ("Couldn't deserialize thrift"); one read of the bytes sees one version."""
    return pq.read_table(pa.BufferReader(Path(path).read_bytes()))


def read_arrow(
    directory: str | os.PathLike[str], name: str, *, missing_ok: bool = False
) -> pa.Table | None:
    """Table ``name`` of a sweep's results in the current schema (version-1 files are upgraded).

    Returns None for a missing file when ``missing_ok``.

    Raises:
        DataError: The file is missing (unless ``missing_ok``), unreadable, or of an unknown schema version.
    """
    if name not in TABLES:
        raise DataError(f"unknown results table {name!r}; expected one of: {', '.join(TABLES)}")
    path = Path(directory) / f"{name}.parquet"
    if not path.is_file():
        if missing_ok:
            return None
        raise DataError(f"{path}: not found (is {directory} the results directory of a sweep?)")
    try:
        table = read_parquet(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = table.schema.metadata or {}
    version = meta.get(b"adgan.schema_version", b"?").decode()
    if version == str(SCHEMA_VERSION):
        return table
    if version == "1":
        return upgrade_v1(name, table)
    raise DataError(
        f"{path}: schema version {version}, this adgan reads {SCHEMA_VERSION} (and upgrades 1); "
        "was it written by a newer adgan?"
    )


def read_table(
    directory: str | os.PathLike[str], name: str, *, missing_ok: bool = False
) -> list[dict[str, Any]]:
    """Rows of ``<directory>/<name>.parquet`` as dicts, in the current schema (see ``read_arrow``).

    Raises:
        DataError: The file is missing (unless ``missing_ok``) or has an unknown schema version.
    """
    table = read_arrow(directory, name, missing_ok=missing_ok)
    return [] if table is None else table.to_pylist()


def upgrade_v1(name: str, table: pa.Table) -> pa.Table:
    """A version-1 table as version 2: ``family`` from the seven models version 1 knew, ``class_name`` from
    the dataset's class names, ``param_<name>`` columns from the ``params`` JSON, ``reported_at`` as a
    timestamp; the columns version 1 did not record (split sizes) are null."""
    rows = table.to_pylist()
    names: dict[str, tuple[str, ...]] = {}
    params: dict[str, pa.DataType] = {}
    for row in rows:
        row["family"] = V1_FAMILIES.get(str(row.get("model")))
        if not row.get("class_name"):
            row["class_name"] = _v1_class_name(names, str(row.get("dataset")), row.get("anomaly_class"))
        for p, v in _param_values(row).items():
            if v is not None:
                params.setdefault(p, _inferred_type(v))
    store = ResultsStore.__new__(ResultsStore)  # the row cleaning of a store, without reading files
    store.params, store.rows = params, {n: {} for n in TABLES}
    for row in rows:
        store._put(name, row)
    return pa.Table.from_pylist(store.table(name), schema=schema_of(name, params)).replace_schema_metadata(
        {"adgan.schema_version": str(SCHEMA_VERSION), "adgan.table": name, "adgan.upgraded_from": "1"}
    )


def _v1_class_name(cache: dict[str, tuple[str, ...]], dataset: str, index: Any) -> str | None:
    if dataset not in cache:
        try:
            from adgan.data import dataset_classes

            cache[dataset] = tuple(dataset_classes(dataset))
        except Exception:  # noqa: BLE001 (a dataset this adgan does not know: no name)
            cache[dataset] = ()
    names = cache[dataset]
    return names[int(index)] if isinstance(index, int) and 0 <= index < len(names) else None


def epoch_row(
    sweep: str, group: Mapping[str, Any], result: Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An ``epochs.parquet`` row from one reported epoch result of a trial with searched ``params``."""
    losses = {k[5:]: float(v) for k, v in result.items() if k.startswith("loss_") and v is not None}
    return {
        "sweep": sweep,
        **group,
        "params": dict(params or {}),
        "trial_id": result["trial_id"],
        "epoch": result["epoch"],
        "losses": losses,
        **{
            k: result.get(k)
            for k in (
                "val_auprc",
                "val_auroc",
                "val_auprc_trapz",
                "best_val_auprc",
                "is_best",
                "epoch_seconds",
                "eval_seconds",
                "samples_per_s",
                "node_ip",
            )
        },
        "reported_at": result.get("timestamp"),
    }


def trial_row(
    sweep: str,
    group: Mapping[str, Any],
    trial_id: str,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    results: Iterable[Mapping[str, Any]],
    *,
    error: str | None,
    checkpoint: str | None,
    max_epochs: int,
) -> dict[str, Any]:
    """A ``trials.parquet`` row from every result a trial reported (in order) and how it ended.

    Status: ``errored`` when the trial raised; ``diverged`` / ``completed`` from the trial's own summary
    (merged into its last report); ``stopped early`` when the scheduler stopped it before its summary.
    """
    results = [r for r in results if r]
    epochs = [r for r in results if r.get("epoch") is not None]
    last = results[-1] if results else {}
    static = next((r for r in reversed(results) if r.get("node_ip")), {})
    best = max(
        epochs, key=lambda r: r.get("val_auprc") if r.get("val_auprc") is not None else -1.0, default={}
    )
    if error:
        status, message = "errored", error
    elif last.get("status"):
        status, message = last["status"], last.get("message") or ""
    else:
        status, message = "stopped early", "stopped by the scheduler (ASHA)"
    return {
        "sweep": sweep,
        **group,
        "trial_id": trial_id,
        "status": status,
        "message": message,
        "params": dict(params),
        "config": dict(config),
        "best_val_auprc": best.get("val_auprc"),
        "best_val_auroc": best.get("val_auroc"),
        "best_epoch": best.get("epoch"),
        "epochs_run": len({r["epoch"] for r in epochs}),
        "max_epochs": max_epochs,
        "wall_seconds": last.get("time_total_s"),
        "fit_seconds": sum(r.get("epoch_seconds") or 0.0 for r in epochs),
        "score_seconds": sum(r.get("eval_seconds") or 0.0 for r in epochs),
        **{
            k: static.get(k)
            for k in (
                "node_ip",
                "node_id",
                "data_source",
                "data_sha256",
                "data_n_samples",
                "n_train",
                "n_val",
                "n_val_anomalies",
                "code_version",
            )
        },
        "checkpoint": checkpoint,
    }


def upgrade_directory(directory: str | os.PathLike[str], *, fill_sizes: bool = True) -> list[str]:
    """Rewrite a version-1 results directory as version 2 (``adgan upgrade``); returns the tables rewritten.

    With ``fill_sizes`` the split sizes version 1 did not record (``n_train``, ``n_val``,
    ``n_val_anomalies``, ``n_test_anomalies``: what the chance flag needs) are recomputed by loading each
    group's split with the trial's own config, which needs the dataset's files at hand.
    """
    directory = Path(directory)
    tables = {name: read_arrow(directory, name, missing_ok=True) for name in TABLES}
    old = [n for n, t in tables.items()
           if t is not None and (t.schema.metadata or {}).get(b"adgan.upgraded_from")]
    if not old:
        return []
    store = ResultsStore(directory)  # reads (and upgrades) every table
    if fill_sizes:
        sizes = _split_sizes([*store.table("trials"), *store.table("best")])
        for name in ("trials", "best"):
            for row in store.table(name):
                extra = sizes.get(_data_key(row.get("config")), {})
                if extra:
                    store.upsert(name, {**row, **{k: v for k, v in extra.items() if row.get(k) is None}})
    store._dirty.update(old)
    store.flush()
    return old


DATA_KEYS = ("dataset", "anomaly_class", "seed", "data_dir", "image_size", "scale", "max_train",
             "dataset_decl")


def _data_key(config: Any) -> str:
    """The part of a trial config (JSON text) that decides its splits."""
    cfg = json.loads(config) if isinstance(config, str) and config else dict(config or {})
    return json.dumps({k: cfg.get(k) for k in DATA_KEYS}, sort_keys=True, default=str)


def _split_sizes(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Split sizes per distinct data part of the trial configs, from the data layer."""
    from adgan.train import load_splits, resolve_config

    out: dict[str, dict[str, int]] = {}
    for row in rows:
        key = _data_key(row.get("config"))
        if key in out or not row.get("config"):
            continue
        config = row["config"]
        splits = load_splits(resolve_config(json.loads(config) if isinstance(config, str) else config))
        out[key] = {"n_train": len(splits.train), "n_val": len(splits.val),
                    "n_val_anomalies": int(splits.val.y.sum()), "n_test_anomalies": int(splits.test.y.sum())}
    return out
