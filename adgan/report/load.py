"""Read a sweep's result files tolerantly, for reports.

A report must render whatever a sweep has written so far: a sweep still running may have only
``epochs.parquet``; an older schema may lack optional columns. So nothing here raises for a missing file
or column: each gap becomes a note shown in the report. Only a results directory that does not exist, or
holds none of the result files, is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from adgan.errors import DataError
from adgan.sweep.provenance import read_runs
from adgan.sweep.results import read_parquet

GROUP_KEYS = ("model", "dataset", "anomaly_class", "loss_case", "seed")
RESULT_FILES = ("epochs", "trials", "best")
# Sweep metadata files beside the Parquet files (first found wins); `adgan sweep` writes spec.json, the
# spec as parsed from its YAML (name, budget, resources, ...).
META_FILES = ("sweep.json", "spec.json", "meta.json", "spec.yaml", "sweep.yaml")
# Detector families, used when a name is not (yet) in the detector registry.
KNOWN_GANS = ("ganomaly", "egbad", "anogan")
KNOWN_BASELINES = ("knn", "iforest", "pca", "ocsvm")


@dataclass
class SweepResults:
    """What a results directory holds.

    Attributes:
        path: The results directory.
        name: The sweep name (from metadata, else the directory name).
        epochs, trials, best: The tables, or None when the file is missing or unreadable.
        meta: Sweep metadata (spec, budget, resources) merged from a metadata file and the Parquet
            files' key-value metadata; empty when none was written.
        meta_file: The metadata file read, if any.
        schema_versions: ``{file: version}`` where the Parquet metadata states one.
        notes: Human-readable notes on what is missing or could not be read.
        runs: The ``adgan sweep`` invocations that wrote the results (``runs.json``: command, machine,
            start, wall time, status), oldest first; empty for results written without it.
    """

    path: Path
    name: str
    epochs: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    best: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    meta_file: str | None = None
    schema_versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def table(self, name: str) -> pd.DataFrame | None:
        return getattr(self, name)


def load_results(path: str | Path) -> SweepResults:
    """Read ``epochs.parquet``, ``trials.parquet``, ``best.parquet`` and any sweep metadata in ``path``.

    Raises:
        DataError: ``path`` is not a directory, or holds none of the three result files.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: results directory not found (expected results/<sweep>/ of `adgan sweep`)")
    present = [n for n in RESULT_FILES if (path / f"{n}.parquet").is_file()]
    if not present:
        raise DataError(
            f"{path}: no sweep results here (expected at least one of "
            f"{', '.join(n + '.parquet' for n in RESULT_FILES)})"
        )
    res = SweepResults(path=path, name=path.name)
    for name in RESULT_FILES:
        file = path / f"{name}.parquet"
        if not file.is_file():
            res.notes.append(f"{file.name} is not there yet (a sweep still running writes it later).")
            continue
        try:
            table = read_parquet(file)
        except (OSError, pa.ArrowException) as exc:
            res.notes.append(f"{file.name} could not be read ({exc}); what depends on it is left out.")
            continue
        _merge_meta(res, name, table.schema.metadata or {})
        frame = _normalise(table.to_pandas(), name, res.notes)
        setattr(res, name, frame)
    _read_meta_file(res)
    res.runs = read_runs(path)
    sweep_name = res.meta.get("name") or res.meta.get("sweep")
    if isinstance(sweep_name, str) and sweep_name:
        res.name = sweep_name
    return res


def _merge_meta(res: SweepResults, name: str, kv: Mapping[bytes, bytes]) -> None:
    """Parquet key-value metadata: a schema version and JSON objects (e.g. the spec) are kept."""
    for raw_key, raw_value in kv.items():
        key = raw_key.decode(errors="replace")
        if key in ("pandas", "ARROW:schema", "adgan.table"):
            continue
        value = raw_value.decode(errors="replace")
        if key in ("schema_version", "adgan_schema_version", "adgan.schema_version"):
            res.schema_versions[name] = value
            continue
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if isinstance(parsed, dict) and key in ("adgan", "sweep", "meta", "adgan.sweep"):
            if "schema_version" in parsed:
                res.schema_versions[name] = str(parsed["schema_version"])
            res.meta.update({k: v for k, v in parsed.items() if k not in res.meta})
        else:
            res.meta.setdefault(key, parsed)


def _read_meta_file(res: SweepResults) -> None:
    for fname in META_FILES:
        file = res.path / fname
        if not file.is_file():
            continue
        try:
            text = file.read_text()
            data = json.loads(text) if fname.endswith(".json") else yaml.safe_load(text)
        except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
            res.notes.append(f"{fname} could not be read ({exc}); budget and resources may be unknown.")
            continue
        if isinstance(data, dict):
            # The metadata file is authoritative over values guessed from Parquet metadata.
            res.meta.update(data)
            res.meta_file = fname
            return


def _normalise(frame: pd.DataFrame, name: str, notes: list[str]) -> pd.DataFrame:
    """Give group keys one type each, and status one spelling, so tables from different writers join."""
    frame = frame.copy()
    missing = [k for k in GROUP_KEYS if k not in frame.columns]
    if "loss_case" in missing:
        frame["loss_case"] = "default"
        missing.remove("loss_case")
    if "seed" in missing:
        frame["seed"] = 0
        missing.remove("seed")
    if missing:
        notes.append(f"{name}.parquet lacks the group key column(s) {', '.join(missing)}.")
    for key in ("model", "dataset", "loss_case"):
        if key in frame.columns:
            frame[key] = frame[key].fillna("default" if key == "loss_case" else "?").astype(str)
    for key in ("anomaly_class", "seed"):
        if key in frame.columns:
            frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(-1).astype(int)
    if "trial_id" in frame.columns:
        frame["trial_id"] = frame["trial_id"].astype(str)
    if "status" in frame.columns:
        frame["status"] = frame["status"].fillna("unknown").astype(str).str.lower().str.replace("_", " ")
    return frame


def has_columns(frame: pd.DataFrame | None, columns: Iterable[str]) -> bool:
    """True when ``frame`` exists, has rows and every one of ``columns``."""
    return frame is not None and len(frame) > 0 and all(c in frame.columns for c in columns)


def missing_columns(frame: pd.DataFrame | None, columns: Iterable[str]) -> list[str]:
    if frame is None:
        return list(columns)
    return [c for c in columns if c not in frame.columns]


def first_column(frame: pd.DataFrame | None, candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` that is a column of ``frame`` (config columns in any of the usual
    spellings: ``x``, ``config.x``, ``config/x``, ``config_x``)."""
    if frame is None:
        return None
    for cand in candidates:
        for col in (cand, f"config.{cand}", f"config/{cand}", f"config_{cand}"):
            if col in frame.columns:
                return col
    return None


def meta_value(meta: Mapping[str, Any], paths: Iterable[str]) -> Any:
    """The first value found at one of the dotted ``paths`` in ``meta`` (e.g. ``budget.max_epochs``)."""
    for dotted in paths:
        node: Any = meta
        for part in dotted.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                node = None
                break
        if node is not None:
            return node
    return None


def model_family(name: str) -> str:
    """``"gan"`` for iterative detectors, ``"baseline"`` for one-shot ones, ``"unknown"`` otherwise.

    The project's own detectors are known by name, so a report does not import torch (seconds) just to
    read ``is_iterative``; any other name is looked up in the detector registry.
    """
    if name in KNOWN_GANS:
        return "gan"
    if name in KNOWN_BASELINES:
        return "baseline"
    try:
        from adgan.models import DETECTORS
    except ImportError:  # the report still works where torch is absent
        return "unknown"
    if name in DETECTORS:
        return "gan" if DETECTORS.get(name).is_iterative else "baseline"
    return "unknown"


def class_label(dataset: str, index: int, names: Mapping[tuple[str, int], str] | None = None) -> str:
    """``"3 (cat)"``-style label of class ``index``; the index alone when the name is unknown."""
    if names and (dataset, index) in names:
        name = names[(dataset, index)]
    else:
        try:
            from adgan.data import dataset_classes

            name = list(dataset_classes(dataset))[index]
        except Exception:  # an unknown dataset or a data layer without names: label by index alone
            name = ""
    return f"{index} ({name})" if name and name != str(index) else str(index)
