"""Sweep results as Parquet files: ``epochs.parquet``, ``trials.parquet``, ``best.parquet``.

Each file has a fixed Arrow schema (below), a ``schema_version`` column and the same number in the file's
metadata (``adgan.schema_version``). Version 2 adds flat columns so that pandas and DuckDB users need no
JSON parsing: ``family`` (gan / baseline), ``class_name``, one ``param_<name>`` column per searched
hyperparameter of the sweep (typed from its search distribution), the split sizes behind the chance level
(``n_val``, ``n_val_anomalies``, ``n_test_anomalies``) and ``reported_at`` as a UTC timestamp.
``read_table`` reads version-1 files by upgrading their rows (see ``upgrade_v1``). Columns added to
version 2 later (``best.test_at_cutoffs``, ``best.n_scored``) are null in files written before them.

The writer (``ResultsStore``) appends the changed rows of each flush as a Parquet part and compacts the
parts into the table file now and then and at the end (see its docstring); every file is written whole and
atomically (``adgan.sweep.storage``), so a reader or an interrupted sweep always sees complete files, and
``read_arrow`` applies the parts to the table file. A store that fails for a while loses no row: the changes
wait in memory for a later flush.
Rows are keyed (epochs by ``(trial_id, epoch)``, trials by ``trial_id``, best rows by ``group_id``); writing
a row whose key exists replaces it, which is what makes a resumed sweep neither duplicate nor lose rows.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adgan.errors import DataError
from adgan.sweep.storage import IO_ERRORS, Location, location

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
        # JSON {cutoff name: {"cutoff", "precision", "recall", "f1", "false_alarm_rate", "flagged"}}: test
        # figures of flagging at the score cutoffs the checkpoint chose on validation (adgan.metrics.cutoffs)
        ("test_at_cutoffs", pa.string()),
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
        ("n_scored", pa.int32()),  # trials that reached a validation figure: those the choice compared
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


PARTS = "{name}.parts"  # the directory of a table's parts, beside ``{name}.parquet``
MERGE_FANOUT = 16  # parts of one level merged into one part of the next
MIN_COMPACT_ROWS = 2000  # parts smaller than this never trigger a rewrite of the whole table


@dataclass(frozen=True)
class Part:
    """One part file: the row changes of flushes ``first``..``last`` (inclusive), merged ``level`` times."""

    first: int
    last: int
    level: int

    @property
    def file(self) -> str:
        return f"{self.first:010d}-{self.last:010d}-L{self.level}.parquet"

    def within(self, other: Part) -> bool:
        """Whether ``other`` covers every flush of this part."""
        return other.first <= self.first and self.last <= other.last

    @classmethod
    def parse(cls, name: str) -> Part | None:
        stem = name.removesuffix(".parquet")
        try:
            first, last, level = stem.split("-")
            return cls(int(first), int(last), int(level.removeprefix("L")))
        except ValueError:
            return None  # a temporary file or something else: not a part


def clean_row(name: str, row: Mapping[str, Any], params: dict[str, pa.DataType]) -> dict[str, Any]:
    """``row`` as a row of table ``name``: every column of its schema, values of the column's type, the
    searched hyperparameters (``params`` of the row) flattened into ``param_<name>`` columns. A parameter
    without a type in ``params`` gets one from its value (added to ``params``)."""
    values = {f"{PARAM_PREFIX}{p}": v for p, v in _param_values(row).items()}
    for column, value in values.items():
        if column[len(PARAM_PREFIX):] not in params and value is not None:
            params[column[len(PARAM_PREFIX):]] = _inferred_type(value)
    values.update(row)
    clean = {f.name: _clean(values.get(f.name), f.type) for f in schema_of(name, params)}
    clean["schema_version"] = SCHEMA_VERSION
    return clean


class ResultsStore:
    """The three tables of one sweep: rows kept in memory, changes written as append-only Parquet parts.

    Every ``flush`` writes one part per changed table holding only the rows changed since the last flush
    (a deleted row as a tombstone: its key and ``_deleted``), so its cost does not grow with the rows
    already written. Parts of one level are merged ``MERGE_FANOUT`` at a time into one of the next level
    (each row is rewritten a logarithmic number of times), and once the parts hold as many rows as the
    whole table, the table itself (``<name>.parquet``, the documented file) is rewritten from memory and
    the parts it covers deleted: a geometric schedule, so rewriting costs a constant per row on average.
    ``close`` writes every table whole and removes the parts. Readers (``read_arrow``) apply the parts to
    the table file and always see a consistent, current table; a reader of ``<name>.parquet`` alone sees a
    consistent, possibly older one.

    Args:
        directory: ``results/<sweep-name>``, a path or a URI (``adgan.sweep.storage``); existing results
            are read back (resume).
        params: Arrow type of each searched hyperparameter (its ``param_<name>`` column); parameters met
            in rows without a declared type get one from their value.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | Location, params: Mapping[str, pa.DataType] | None = None
    ) -> None:
        self.loc = directory if isinstance(directory, Location) else location(directory)
        self.params: dict[str, pa.DataType] = dict(params or {})
        self.rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {name: {} for name in TABLES}
        self._changes: dict[str, dict[tuple[Any, ...], dict[str, Any] | None]] = {n: {} for n in TABLES}
        self._by_group: dict[str, dict[str, set[tuple[Any, ...]]]] = {n: {} for n in TABLES}
        self._by_trial: dict[str, set[tuple[Any, ...]]] = {}
        self._parts: dict[str, list[Part]] = {n: [] for n in TABLES}
        self._base_rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._seq = 0
        self._last_flush = 0.0
        self._failures, self._retry_at, self._failing_since = 0, 0.0, 0.0  # writes failing (see flush)
        # Tallies for the progress lines, kept as rows change (a scan of the tables every 30 s would cost
        # more the longer the sweep runs): epoch rows of trials that have a trial row (ended), the budgets
        # (max_epochs) of those trials, and the groups with epoch rows but no best row (not done).
        self._ended_epochs = 0
        self._ended_budget = 0
        self._open_groups: set[str] = set()
        for name in TABLES:
            state = _read_state(self.loc, name)
            if state is None:
                continue
            table, parts, base_rows, seq = state
            self._parts[name], self._base_rows[name] = parts, base_rows
            self._seq = max(self._seq, seq)
            for field in table.schema:
                if field.name.startswith(PARAM_PREFIX):
                    self.params.setdefault(field.name[len(PARAM_PREFIX):], field.type)
            for row in table.to_pylist():
                self._put(name, row)

    # ----- rows in memory -----
    def _put(self, name: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
        _, key_cols = TABLES[name]
        clean = clean_row(name, row, self.params)
        key = tuple(clean[k] for k in key_cols)
        old = self.rows[name].get(key)
        self.rows[name][key] = clean
        gid, tid = str(clean.get("group_id")), str(clean.get("trial_id"))
        self._by_group[name].setdefault(gid, set()).add(key)
        if name != "best":
            self._by_trial.setdefault(tid, set()).add((name, *key))
        if name == "epochs":
            self._ended_epochs += old is None and self._has_trial_row(tid)
            if not self._by_group["best"].get(gid):
                self._open_groups.add(gid)
        elif name == "trials":
            self._ended_budget += _budget(clean) - (_budget(old) if old else 0)
            if old is None:
                self._ended_epochs += self._n_epochs(tid)
        else:
            self._open_groups.discard(gid)
        return key

    def _remove(self, name: str, key: tuple[Any, ...]) -> None:
        row = self.rows[name].pop(key, None)
        if row is not None:
            gid, tid = str(row.get("group_id")), str(row.get("trial_id"))
            if name == "epochs":
                self._ended_epochs -= self._has_trial_row(tid)
            elif name == "trials":
                self._ended_budget -= _budget(row)
                self._ended_epochs -= self._n_epochs(tid)
            self._by_group[name].get(gid, set()).discard(key)
            self._by_trial.get(tid, set()).discard((name, *key))
            if name == "best" and self._by_group["epochs"].get(gid):
                self._open_groups.add(gid)
            elif name == "epochs" and not self._by_group["epochs"].get(gid):
                self._open_groups.discard(gid)
            self._changes[name][key] = None

    def _has_trial_row(self, trial_id: str) -> bool:
        return ("trials", trial_id) in self._by_trial.get(trial_id, ())

    def _n_epochs(self, trial_id: str) -> int:
        return sum(1 for n, *_ in self._by_trial.get(trial_id, ()) if n == "epochs")

    def progress_counts(self) -> tuple[int, int, int]:
        """``(epoch rows, epoch rows of trials that have a trial row, the max_epochs of those trials)``:
        what a progress line needs, in constant time (kept up to date as rows change)."""
        return self.count("epochs"), self._ended_epochs, self._ended_budget

    def open_groups(self) -> list[str]:
        """Groups with epoch rows but no best row yet (in progress, or waiting for their test scoring)."""
        return sorted(self._open_groups)

    def upsert(self, name: str, row: Mapping[str, Any]) -> None:
        """Insert ``row`` into table ``name`` or replace the row with the same key."""
        key = self._put(name, row)
        self._changes[name][key] = self.rows[name][key]

    def drop_trial(self, trial_id: str, from_epoch: int = 1) -> None:
        """Remove a trial's row and its epoch rows from ``from_epoch`` on (it continues from there)."""
        for name, *key in list(self._by_trial.get(trial_id, ())):
            if name == "trials" or int(self.rows[name][tuple(key)]["epoch"]) >= from_epoch:
                self._remove(name, tuple(key))

    def table(self, name: str) -> list[dict[str, Any]]:
        """The rows of ``name`` in key order."""
        return [self.rows[name][k] for k in sorted(self.rows[name], key=_sort_key)]

    def rows_of_group(self, name: str, group_id: str) -> list[dict[str, Any]]:
        """The rows of one group in ``name``, in key order (without sorting the whole table)."""
        keys = sorted(self._by_group[name].get(group_id, ()), key=_sort_key)
        return [self.rows[name][k] for k in keys]

    def trials_without_row(self, name: str) -> list[str]:
        """Trials with rows in ``name`` but no ``trials`` row (still running, or never recorded)."""
        return sorted(tid for tid, keys in self._by_trial.items()
                      if ("trials", tid) not in keys and any(k[0] == name for k in keys))

    def rows_of_trial(self, name: str, trial_id: str) -> list[dict[str, Any]]:
        keys = sorted((tuple(k) for n, *k in self._by_trial.get(trial_id, ()) if n == name), key=_sort_key)
        return [self.rows[name][k] for k in keys]

    def count(self, name: str) -> int:
        return len(self.rows[name])

    # ----- files -----
    def flush(self, *, min_interval: float = 0.0) -> bool:
        """Write the changes since the last flush as parts (not more often than ``min_interval`` seconds).

        A store that cannot be written (an object store unreachable for a while, a full disk) loses
        nothing: the changes stay in memory and go with a later flush, tried again after a pause that
        doubles with each failure up to ``RETRY_MAX_S`` (the driver is not stalled by a dead store); one
        message when writing fails, one when it works again. Returns whether nothing is left unwritten.
        """
        changed = [n for n in TABLES if self._changes[n]]
        now = time.monotonic()
        if not changed:
            return True
        if now - self._last_flush < min_interval or now < self._retry_at:
            return False
        try:
            self._write_changes(changed)
        except STORE_ERRORS as exc:
            self._failed(exc)
            return False
        self._recovered()
        for name in changed:
            try:
                self._maintain(name)
            except STORE_ERRORS as exc:  # merges and compactions are tried again at the next flush
                self._failed(exc)
                return True
        self._last_flush = time.monotonic()
        return True

    def _write_changes(self, changed: list[str]) -> None:
        """One part per changed table; a table's changes are forgotten only once its part is written."""
        self._seq += 1  # a part written although its write reported a failure is repeated by a later one
        for name in changed:
            self._write_part(name, Part(self._seq, self._seq, 0), self._changes[name])
            self._changes[name] = {}

    def _maintain(self, name: str) -> None:
        self._merge_levels(name)
        part_rows = sum(_part_rows(self.loc, name, p) for p in self._parts[name])
        if part_rows >= max(self._base_rows[name], MIN_COMPACT_ROWS):
            self._compact(name)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        self._retry_at = now + min(RETRY_MAX_S, 2.0 ** self._failures)
        if self._failures == 1:
            self._failing_since = now
            pending = sum(len(c) for c in self._changes.values())
            print(f"adgan: warning: results not written to {self.loc.uri} ({_short(exc)}); {pending} changed "
                  "rows kept in memory, trying again with every flush", file=sys.stderr)

    def _recovered(self) -> None:
        if self._failures:
            print(f"adgan: results written to {self.loc.uri} again, after "
                  f"{time.monotonic() - self._failing_since:.0f} s of failed writes", file=sys.stderr)
        self._failures, self._retry_at = 0, 0.0

    def close(self, *, timeout: float = 600.0) -> None:
        """Flush, then write every table whole and remove its parts (the end of a sweep). A store that
        cannot be written is tried again, with pauses, for up to ``timeout`` seconds.

        Raises:
            DataError: The store could still not be written after ``timeout`` seconds (nothing of Tune's
                own record is lost: ``adgan sweep --resume`` rebuilds the tables from it).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._close_once()
                self._recovered()
                return
            except STORE_ERRORS as exc:
                self._failed(exc)
                if time.monotonic() >= deadline:
                    pending = sum(len(c) for c in self._changes.values())
                    raise DataError(
                        f"{self.loc.uri}: results could not be written for {timeout:.0f} s ({_short(exc)}); "
                        f"{pending} changed rows not written. Once the store is reachable, `adgan sweep "
                        "SPEC --resume` (same --results) rebuilds every table from Ray Tune's record"
                    ) from None
                time.sleep(max(0.0, min(self._retry_at - time.monotonic(), deadline - time.monotonic())))

    def _close_once(self) -> None:
        changed = [n for n in TABLES if self._changes[n]]
        if changed:
            self._write_changes(changed)
        for name in TABLES:
            if self._parts[name] or (self.rows[name] and not self._table_loc(name).exists()):
                self._compact(name)
            # Parts a failed deletion or a failed-looking write left behind: all covered by the table now.
            for stale in self._parts_loc(name).list_files():
                _try_delete(self._parts_loc(name).child(stale))

    def _table_loc(self, name: str) -> Location:
        return self.loc.child(f"{name}.parquet")

    def _parts_loc(self, name: str) -> Location:
        return self.loc.child(PARTS.format(name=name))

    def _write_part(
        self, name: str, part: Part, changes: Mapping[tuple[Any, ...], dict[str, Any] | None]
    ) -> None:
        _, key_cols = TABLES[name]
        rows = [{**row, "_deleted": False} if row is not None else
                {**dict(zip(key_cols, key, strict=True)), "_deleted": True} for key, row in changes.items()]
        schema = schema_of(name, self.params).append(pa.field("_deleted", pa.bool_()))
        table = pa.Table.from_pylist(rows, schema=schema)
        self._parts_loc(name).child(part.file).write_bytes(_parquet_bytes(table, name, {"adgan.part": "1"}))
        _PART_ROWS[(self.loc.uri, name, part)] = len(rows)
        self._parts[name].append(part)

    def _merge_levels(self, name: str) -> None:
        """Merge ``MERGE_FANOUT`` consecutive parts of one level into one part of the next, as needed."""
        level = 0
        while True:
            same = [p for p in self._parts[name] if p.level == level]
            if len(same) < MERGE_FANOUT:
                return
            group = sorted(same, key=lambda p: p.first)[:MERGE_FANOUT]
            changes: dict[tuple[Any, ...], dict[str, Any] | None] = {}
            _, key_cols = TABLES[name]
            for part in group:  # later parts win
                for row in _read_part(self._parts_loc(name), part).to_pylist():
                    key = tuple(row[k] for k in key_cols)
                    changes[key] = None if row.pop("_deleted") else row
            merged = Part(group[0].first, group[-1].last, level + 1)
            self._write_part(name, merged, changes)  # (a failure here changes nothing: merged again later)
            self._parts[name] = [p for p in self._parts[name] if p not in group]
            for part in group:  # after the merged part exists: a reader never misses a change
                _try_delete(self._parts_loc(name).child(part.file))
            level += 1

    def _compact(self, name: str) -> None:
        """Rewrite ``<name>.parquet`` from memory, covering every flush so far, then delete the parts."""
        table = pa.Table.from_pylist(self.table(name), schema=schema_of(name, self.params))
        meta = {"adgan.merged_through": str(self._seq)}
        self._table_loc(name).write_bytes(_parquet_bytes(table, name, meta))
        self._base_rows[name] = table.num_rows
        for part in self._parts[name]:  # covered by the table now: readers skip any left behind
            _try_delete(self._parts_loc(name).child(part.file))
        self._parts[name] = []


# What a store that cannot be written raises (pyarrow's S3/GCS errors are OSErrors or ArrowExceptions).
STORE_ERRORS: tuple[type[BaseException], ...] = (*IO_ERRORS, DataError)
RETRY_MAX_S = 60.0  # the longest pause between two tries of a store that failed


def _try_delete(loc: Location) -> None:
    """Delete a part that a table or a merged part now covers; one left behind (the store failed) is
    skipped by readers and removed by ``close``."""
    with contextlib.suppress(*STORE_ERRORS):
        loc.delete()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _budget(row: Mapping[str, Any]) -> int:
    return int(row.get("max_epochs") or 0)


_PART_ROWS: dict[tuple[str, str, Part], int] = {}  # rows per part written or read by this process


def _part_rows(loc: Location, name: str, part: Part) -> int:
    key = (loc.uri, name, part)
    if key not in _PART_ROWS:
        _PART_ROWS[key] = _read_part(loc.child(PARTS.format(name=name)), part).num_rows
    return _PART_ROWS[key]


def _parquet_bytes(table: pa.Table, name: str, meta: Mapping[str, str] | None = None) -> bytes:
    table = table.replace_schema_metadata(
        {"adgan.schema_version": str(SCHEMA_VERSION), "adgan.table": name, **(meta or {})}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _listed_parts(parts_dir: Location) -> list[Part]:
    return [p for p in map(Part.parse, parts_dir.list_files()) if p is not None]


def _read_part(parts_dir: Location, part: Part) -> pa.Table:
    return _parquet_from_bytes(parts_dir.child(part.file).read_bytes())


def _parquet_from_bytes(data: bytes) -> pa.Table:
    # pq.ParquetFile, not pq.read_table: read_table scans through Arrow's dataset layer, whose read-ahead
    # callbacks may still run on Arrow's threads when a short-lived process exits, aborting it (Arrow issue
    # 39862; seen once: a sweep driver SIGABRTed after printing its summary).
    return pq.ParquetFile(pa.BufferReader(data)).read()


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in key)


def read_parquet(path: str | os.PathLike[str] | Location) -> pa.Table:
    """A Parquet file read in one go: ``pq.read_table(path)`` opens the path again for the data after
    reading the footer, so a file replaced in between (a sweep writing as results arrive) mixes two
    versions ("Couldn't deserialize thrift"); one read of the bytes sees one version."""
    loc = path if isinstance(path, Location) else location(path)
    return _parquet_from_bytes(loc.read_bytes())


def _read_state(loc: Location, name: str) -> tuple[pa.Table, list[Part], int, int] | None:
    """(current table, live parts, rows of the table file, last flush seen) of table ``name``; None when
    neither the table file nor a part exists. Retries when a writer merges or compacts meanwhile."""
    for _ in range(20):
        try:
            return _read_state_once(loc, name)
        except FileNotFoundError:
            continue  # a part was merged or compacted away between listing and reading: read again
    raise DataError(f"{loc.uri}: {name} changed too often while being read; try again")


def _read_state_once(loc: Location, name: str) -> tuple[pa.Table, list[Part], int, int] | None:
    # The parts are listed before the table file is read: a compaction between the two then shows as a
    # newer table file covering the listed parts (skipped below), whereas a table file read first and parts
    # listed after a compaction would miss the rows the compaction moved from the parts into the file.
    parts_dir = loc.child(PARTS.format(name=name))
    listed = _listed_parts(parts_dir)
    base_loc = loc.child(f"{name}.parquet")
    base: pa.Table | None = None
    merged_through = 0
    if base_loc.is_file():
        try:
            base = read_parquet(base_loc)
        except pa.ArrowException as exc:
            raise DataError(f"{base_loc.uri}: not a readable Parquet file ({exc})") from None
        meta = base.schema.metadata or {}
        version = meta.get(b"adgan.schema_version", b"?").decode()
        if version == "1":
            base = upgrade_v1(name, base)
        elif version != str(SCHEMA_VERSION):
            raise DataError(
                f"{base_loc.uri}: schema version {version}, this adgan reads {SCHEMA_VERSION} (and upgrades "
                "1); was it written by a newer adgan?"
            )
        merged_through = int(meta.get(b"adgan.merged_through", b"0"))
    found = [p for p in listed if p.last > merged_through]
    # A part merged into another one still listed (a reader between the merge and the deletion) is left out.
    live = sorted((p for p in found if not any(q != p and p.within(q) for q in found)), key=lambda p: p.first)
    tables = [] if base is None else [
        base.append_column("_deleted", pa.array([False] * base.num_rows, pa.bool_()))]
    tables += [_read_part(parts_dir, p) for p in live]
    seq = max([merged_through, *(p.last for p in live)])
    # A listing taken while the writer merges may hold neither the merged part (created after the listing
    # passed its place) nor the parts it replaced (deleted before the listing reached them): the rows of
    # those flushes would be missing, not only the newest ones. Listed again now, a part within the flushes
    # read that was neither listed nor inside a part read tells it: read again.
    again = _listed_parts(parts_dir)
    for part in again:
        if merged_through < part.last <= seq and part not in listed and not any(part.within(q) for q in live):
            raise FileNotFoundError(part.file)
    if base is None and not live:
        if again or base_loc.is_file():
            raise FileNotFoundError(base_loc.uri)  # written while this read found nothing: read again
        return None
    return _apply(name, tables), live, (0 if base is None else base.num_rows), seq


def _apply(name: str, tables: list[pa.Table]) -> pa.Table:
    """Concatenate (oldest first), keep each key's last row, drop deleted keys; sorted by key."""
    _, key_cols = TABLES[name]
    combined = pa.concat_tables(tables, promote_options="default")
    combined = combined.append_column("_order", pa.array(range(combined.num_rows), pa.int64()))
    last = combined.group_by(list(key_cols), use_threads=False).aggregate([("_order", "max")])
    kept = combined.take(last["_order_max"])
    kept = kept.filter(pc.invert(pc.fill_null(kept["_deleted"], False)))
    kept = kept.drop_columns(["_deleted", "_order"])
    order = pc.sort_indices(kept, sort_keys=[(k, "ascending", "at_end") for k in key_cols])
    return kept.take(order)


def read_arrow(
    directory: str | os.PathLike[str] | Location, name: str, *, missing_ok: bool = False
) -> pa.Table | None:
    """Table ``name`` of a sweep's results, current (its parts applied) and in the current schema (version-1
    files are upgraded). ``directory`` is a path or a URI.

    Returns None for a table not written yet when ``missing_ok``.

    Raises:
        DataError: The table is missing (unless ``missing_ok``), unreadable, or of an unknown schema version.
    """
    if name not in TABLES:
        raise DataError(f"unknown results table {name!r}; expected one of: {', '.join(TABLES)}")
    loc = directory if isinstance(directory, Location) else location(directory)
    try:
        state = _read_state(loc, name)
    except pa.ArrowException as exc:
        raise DataError(f"{loc.uri}: {name} is not readable ({exc})") from None
    if state is None:
        if missing_ok:
            return None
        raise DataError(
            f"{loc.child(name + '.parquet').uri}: not found (is {loc.uri} the results directory of a sweep?)"
            + sweeps_inside(loc)
        )
    return state[0]


def sweeps_inside(loc: Location) -> str:
    """For a local directory that is not a sweep's: the sweeps' directories directly inside it (the results
    root, ``results/``, given instead of ``results/<sweep>``), as a hint."""
    if not loc.is_local or not os.path.isdir(loc.path):
        return ""
    found = sorted(e.name for e in os.scandir(loc.path) if e.is_dir() and os.path.isfile(
        os.path.join(e.path, "spec.json")))
    if not found:
        return ""
    shown = ", ".join(os.path.join(str(loc.path), n) for n in found[:5])
    return f"; it holds the sweep{'s' if len(found) > 1 else ''} {shown}{' ...' if len(found) > 5 else ''}"


def read_table(
    directory: str | os.PathLike[str] | Location, name: str, *, missing_ok: bool = False
) -> list[dict[str, Any]]:
    """Rows of table ``name`` as dicts, in the current schema (see ``read_arrow``).

    Raises:
        DataError: The table is missing (unless ``missing_ok``) or has an unknown schema version.
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
    cleaned = [clean_row(name, row, params) for row in rows]
    return pa.Table.from_pylist(cleaned, schema=schema_of(name, params)).replace_schema_metadata(
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
        **{k: result.get(k) for k in EPOCH_METRICS},
        "reported_at": result.get("timestamp"),
    }


# What an epoch's row takes from the epoch's report, besides its ``loss_*`` keys.
EPOCH_METRICS = ("val_auprc", "val_auroc", "val_auprc_trapz", "best_val_auprc", "is_best", "epoch_seconds",
                 "eval_seconds", "samples_per_s", "node_ip")
EPOCH_REPORT_KEYS = ("trial_id", "epoch", "timestamp", *EPOCH_METRICS)


# The key under which a report carries earlier epochs' reports: a finished trial's outcome reported again
# (adgan.sweep.callback.finish_checkpoint), the first report of a restarted trial (adgan.sweep.trial).
EPOCH_REPORTS = "epoch_reports"


def epoch_report(result: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`epoch_row` and :func:`trial_row` read of an epoch's report (Tune's own keys left out)."""
    return {k: v for k, v in result.items() if k in EPOCH_REPORT_KEYS or k.startswith("loss_")}


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
        # Resolved by the trial (every default filled in); a trial that failed before, or reported by an
        # older adgan, leaves the sweep's trial config.
        "config": json.loads(static["resolved_config"]) if static.get("resolved_config") else dict(config),
        "best_val_auprc": best.get("val_auprc"),
        "best_val_auroc": best.get("val_auroc"),
        "best_epoch": best.get("epoch"),
        "epochs_run": len({r["epoch"] for r in epochs}),
        "max_epochs": max_epochs,
        # (A finished trial reporting its outcome again after a resume carries its own time.)
        "wall_seconds": last.get("finished_time_total_s") or last.get("time_total_s"),
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
    if not location(directory).exists():
        raise DataError(f"{directory}: results directory not found (expected results/<sweep>/ of adgan "
                        "sweep)")
    tables = {name: read_arrow(directory, name, missing_ok=True) for name in TABLES}
    if all(t is None for t in tables.values()):
        raise DataError(f"{directory}: no sweep results here (expected at least one of "
                        f"{', '.join(n + '.parquet' for n in TABLES)} written by `adgan sweep`)")
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
    store.flush()
    for name in old:
        store._compact(name)
    store.close()
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
