"""Read a sweep's results for a report, through the results module's own reader.

A report must render whatever a sweep has written so far: a sweep still running may have only
``epochs.parquet``, so a missing table becomes a note shown in the report rather than an error. The tables
are read with :func:`adgan.sweep.results.read_arrow` (the schema the sweep writes; version-1 files
upgraded), and the sweep's own metadata from ``spec.json`` (the spec as parsed, the budget and the resources
per trial the runner actually used). A directory that is not a sweep's results is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adgan.errors import DataError
from adgan.sweep.provenance import read_runs
from adgan.sweep.results import SCHEMA_VERSION, TABLES, read_arrow, sweeps_inside
from adgan.sweep.storage import location

GROUP_KEYS = ("model", "dataset", "anomaly_class", "loss_case", "seed")
RESULT_FILES = tuple(TABLES)
SPEC_FILE = "spec.json"  # written by the runner: the spec, budget_name, effective_budget, effective_resources


@dataclass
class SweepResults:
    """What a results directory holds.

    Attributes:
        path: The results directory (a ``Path``, or the URI of results on an object store).
        name: The sweep name (from ``spec.json``, else the directory name).
        epochs, trials, best: The tables, or None when the file is not there (yet).
        spec: ``spec.json`` as the runner wrote it; empty when absent.
        notes: Human-readable notes on what is missing.
        runs: The ``adgan sweep`` invocations that wrote the results (``runs.json``), oldest first.
    """

    path: Path | str
    name: str
    epochs: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    best: pd.DataFrame | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def table(self, name: str) -> pd.DataFrame | None:
        return getattr(self, name)

    @property
    def budget(self) -> dict[str, Any]:
        """The budget the sweep ran with (``effective_budget``: a named budget overrides the spec's)."""
        return dict(self.spec.get("effective_budget") or {})

    @property
    def resources(self) -> tuple[float | None, float | None]:
        """(CPUs, GPU share) each trial held (``effective_resources``, after ``--gpu`` and the no-GPU
        fallback); (None, None) when no ``spec.json`` was written."""
        res = self.spec.get("effective_resources")
        if not isinstance(res, dict):
            return None, None
        return float(res.get("cpus", 1.0)), float(res.get("gpu", 0.0))


def load_results(path: str | Path) -> SweepResults:
    """Read ``epochs.parquet``, ``trials.parquet``, ``best.parquet``, ``spec.json`` and ``runs.json``.

    Raises:
        DataError: ``path`` is not a directory, holds none of the result files, or a file is unreadable or
            of an unknown schema version.
    """
    loc = location(path)
    if not loc.exists():
        raise DataError(f"{loc.uri}: results directory not found (expected results/<sweep>/ of adgan sweep)")
    tables = {name: read_arrow(loc, name, missing_ok=True) for name in RESULT_FILES}
    if all(t is None for t in tables.values()):
        raise DataError(
            f"{loc.uri}: no sweep results here (expected at least one of "
            f"{', '.join(n + '.parquet' for n in RESULT_FILES)} written by `adgan sweep`)"
            + sweeps_inside(loc)
        )
    # (A URI stays a string: Path() would fold its "//".)
    res = SweepResults(path=Path(loc.path) if loc.is_local else loc.uri, name=loc.name())
    for name, table in tables.items():
        if table is None:
            res.notes.append(f"{name}.parquet is not there yet (a sweep still running writes it later).")
            continue
        if (table.schema.metadata or {}).get(b"adgan.upgraded_from"):
            res.schema_version = 1
        setattr(res, name, table.to_pandas())
    spec_file = loc.child(SPEC_FILE)
    if spec_file.is_file():
        try:
            res.spec = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{spec_file.uri}: not readable JSON ({exc})") from None
        res.name = str(res.spec.get("name") or res.name)
    else:
        res.notes.append(f"{SPEC_FILE} is missing: the budget and resources per trial are unknown, so "
                         "CPU/GPU hours and budget shares are left out.")
    res.runs = read_runs(loc)
    if res.schema_version == 1:
        res.notes.append("These results were written with schema version 1 and upgraded on reading "
                         "(split sizes were not recorded then: chance flags are unknown).")
    return res


def has_columns(frame: pd.DataFrame | None, columns: Iterable[str]) -> bool:
    """True when ``frame`` exists, has rows and every one of ``columns``."""
    return frame is not None and len(frame) > 0 and all(c in frame.columns for c in columns)


def config_values(frame: pd.DataFrame, key: str) -> pd.Series:
    """Per row, ``key`` of the trial's ``config`` (the JSON text every trials/best row holds)."""

    def pick(text: Any) -> Any:
        cfg = json.loads(text) if isinstance(text, str) and text else {}
        return cfg.get(key) if isinstance(cfg, dict) else None

    return frame["config"].map(pick)


def class_label(index: int, name: str | None) -> str:
    """``"3 (cat)"``-style label of a class; the index alone when it has no other name."""
    return f"{index} ({name})" if name and name != str(index) else str(index)
