"""Weights & Biases logging: one run per trial, one summary run per sweep; offline unless the user set up
W&B online.

The mode is decided once in the driver (:func:`wandb_mode`) and handed to the trials, because on a
cluster the trials' environment is not the driver's: ``WANDB_MODE`` when set; ``online`` when the user is
logged in (``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ``~/.netrc``, what ``wandb login`` writes);
otherwise ``offline``, which needs neither a network nor an account. Offline runs are synced later with
``wandb sync <results>/<sweep>/wandb/offline-run-*`` (see docs/sweeps.md).

What a run holds, so that W&B's runs table, filters and parallel coordinates work without parsing names:

- a trial's run (:class:`TrialRun`): the trial's config plus ``class_name``, ``family`` (``gan`` /
  ``baseline``), ``sweep``, ``group_id`` and ``trial_id``; tags ``sweep:<name>`` and ``dataset:<name>``;
  per-epoch metrics with the epoch as step; a summary holding the **best** epoch's figures, not the last
  epoch's (``val_auprc`` and ``val_auroc`` summarised as their maximum by ``define_metric``,
  ``best_val_auprc`` with ``best_epoch`` the epoch it came from and ``best_val_auroc`` that epoch's AUROC);
- the sweep's summary run (:func:`log_sweep_summary`, written by the driver when the sweep ends): the
  per-group and per-class tables (``wandb.Table``) built from ``best.parquet``, every group's chosen trial
  with its validation and test figures in the run summary (``groups``), and the exported per-class
  checkpoints as ``model`` artifacts.

The chosen trial's **own** run gets its test metrics only online (:func:`add_test_metrics`, through W&B's
public API, when the sweep ends): W&B 0.31 cannot resume an offline run (``wandb.init(id=..., resume=...)``
in offline mode starts a new, empty run with the same id, and syncing two offline runs of one id lets the
later replace the earlier's data), so offline the test figures live in the summary run.
"""

from __future__ import annotations

import hashlib
import json
import math
import netrc
import os
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from adgan.atomic import write_atomic

# Test metrics a chosen trial gets (``best.parquet`` columns).
TEST_KEYS = ("test_auprc", "test_auroc", "test_auprc_trapz", "test_f1", "test_precision", "test_recall",
             "test_threshold", "test_q", "n_test")
# In the runs' folder: which best rows the last summary run was logged for, and where it is.
SUMMARY_MARKER = "adgan-summary.json"
_SETTINGS = {"console": "off", "silent": True, "x_disable_stats": True, "save_code": False}


def wandb_mode() -> str:
    """``online``, ``offline`` or ``disabled`` (see the module docstring)."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        auth = None
    return "online" if auth else "offline"


def run_tags(sweep: str, dataset: str) -> list[str]:
    """The tags of every run of a sweep: ``sweep:<name>`` and ``dataset:<name>`` (W&B allows 64 chars)."""
    return [f"sweep:{sweep}"[:64], f"dataset:{dataset}"[:64]]


def describe(config: Mapping[str, Any]) -> dict[str, Any]:
    """``class_name`` and ``family`` of a trial config (``dataset``, ``anomaly_class``, ``model``), for
    W&B filters; a dataset or model this process cannot resolve gets the class index and no family."""
    from adgan.data import dataset_classes
    from adgan.models import DETECTORS

    out: dict[str, Any] = {}
    cls = config.get("anomaly_class")
    try:
        dataset = str(config["dataset"])
        if config.get("dataset_decl"):  # a user's declared dataset: registered in this process first
            from adgan.train import resolve_config

            dataset = resolve_config(dict(config))["dataset"]
        out["class_name"] = dataset_classes(dataset)[int(cls)]  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 (a name for a filter, never a reason to fail a trial)
        out["class_name"] = str(cls)
    try:
        out["family"] = DETECTORS.get(str(config["model"])).family
    except Exception:  # noqa: BLE001
        out["family"] = None
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``metrics`` (W&B would chart a bool or a NaN as noise)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


class TrialRun:
    """The W&B run of one trial (``group = <sweep>/<group id>``, ``name = <trial id>``).

    Args:
        project: W&B project.
        directory: Parent of the ``wandb/`` folder (the sweep's results directory).
        mode: ``online`` / ``offline`` / ``disabled``.
        sweep, group_id, trial_id: Naming of the run.
        config: Logged as the run's config (the full trial config), with ``class_name``, ``family``,
            ``sweep``, ``group_id`` and ``trial_id`` added.
    """

    def __init__(
        self,
        project: str,
        directory: str,
        mode: str,
        sweep: str,
        group_id: str,
        trial_id: str,
        config: Mapping[str, Any],
    ) -> None:
        import wandb

        os.makedirs(directory, exist_ok=True)
        self.run = wandb.init(
            project=project,
            dir=directory,
            mode=mode,
            group=f"{sweep}/{group_id}",
            name=trial_id,
            job_type="trial",
            tags=run_tags(sweep, str(config.get("dataset"))),
            config={**config, **describe(config), "sweep": sweep, "trial_id": trial_id, "group_id": group_id},
            reinit="finish_previous",  # trial actors are reused: a stray run of a previous trial is closed
            settings=wandb.Settings(**_SETTINGS),
        )
        # The runs table shows a run's summary: without these, W&B keeps each metric's last epoch there,
        # while the trial delivers its best epoch's checkpoint. ``best_val_auprc`` (best so far) and
        # ``best_epoch`` are logged every epoch, so their last value is already the best.
        self.run.define_metric("val_auprc", summary="max")
        self.run.define_metric("val_auroc", summary="max")

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the numeric entries of ``metrics`` at ``step`` (the epoch); an epoch that improved the
        validation AUPRC (``is_best``) also puts its AUROC in the summary as ``best_val_auroc``."""
        clean = _numbers(metrics)
        self.run.log(clean, step=step)
        if metrics.get("is_best") is True and "val_auroc" in clean:
            self.run.summary["best_val_auroc"] = clean["val_auroc"]

    def finish(self, summary: Mapping[str, Any] | None = None, exit_code: int = 0) -> None:
        if summary:
            for k, v in summary.items():
                if isinstance(v, int | float | str | bool):
                    self.run.summary[k] = v
        self.run.finish(exit_code=exit_code)
        # Stop W&B's background service now: Ray ends a reused trial worker by killing its child
        # processes first, and W&B's exit hook would then fail loudly on the lost connection (~0.3 s more
        # for the next trial's start).
        import wandb

        wandb.teardown()


def _test_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A chosen trial's figures: what its run's summary (online) or the summary run's ``groups`` get."""
    keys = ("trial_id", "class_name", "model", "family", "loss_case", "seed", "val_auprc", "val_auroc",
            "best_epoch", *TEST_KEYS)
    return {k: row.get(k) for k in keys if row.get(k) is not None}


def add_test_metrics(project: str, sweep: str, rows: Iterable[Mapping[str, Any]], api: Any = None) -> int:
    """Write each group's test figures into the summary of its chosen trial's run (online only).

    Uses W&B's public API (``Run.summary.update``), which edits a finished run on the server: W&B cannot
    resume an offline run, which is why offline sweeps keep these figures in the summary run only.

    Args:
        project: The sweep's W&B project (in the API key's default entity).
        sweep: The sweep's name (runs are found by ``group = <sweep>/<group id>`` and ``name = trial id``).
        rows: ``best.parquet`` rows.
        api: A ``wandb.Api`` (tests pass a fake); created when None.

    Returns:
        How many runs were updated (a restarted trial has one run per attempt: each is updated).
    """
    if api is None:
        import wandb

        api = wandb.Api()
    updated = 0
    for row in rows:
        if not row.get("trial_id"):
            continue  # no trial of the group finished with a checkpoint
        found = api.runs(
            f"{api.default_entity}/{project}",
            filters={"display_name": row["trial_id"], "group": f"{sweep}/{row['group_id']}"},
        )
        for run in found:
            run.summary.update({**{k: v for k, v in _test_record(row).items() if k in TEST_KEYS},
                                "chosen": True})
            updated += 1
    return updated


def _table_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a ``wandb.Table``: scalars as they are, anything else (params, dicts) as JSON text; the
    full training config is left out (it is in each trial's run)."""
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if k == "config":
                continue
            if v is None or isinstance(v, bool | int | float | str):
                clean[k] = v
            else:
                clean[k] = json.dumps(v, sort_keys=True, default=str)
        out.append(clean)
    return out


def _table(rows: list[dict[str, Any]]) -> Any:
    import wandb

    columns = list(dict.fromkeys(k for r in rows for k in r))
    return wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])


def run_parent(results_dir: str) -> str:
    """The directory W&B writes its ``wandb/`` folder into: the sweep's results directory, or, results on an
    object store (W&B writes files in place), this machine's state directory of the sweep
    (``adgan.sweep.storage.local_state_dir``), on every node its own."""
    from adgan.sweep.storage import is_uri, local_state_dir

    return str(local_state_dir(results_dir)) if is_uri(results_dir) else str(results_dir)


def offline_hint(results_dir: str, project: str, sweep: str) -> str | None:
    """The closing line of an offline sweep: where its W&B runs lie on this machine and the command that
    uploads them; None when there are none here (W&B disabled or online, or nothing logged)."""
    from adgan.sweep.storage import is_uri

    where = Path(run_parent(results_dir)) / "wandb"
    n = len(list(where.glob("offline-run-*")))
    if not n:
        return None
    # Results on an object store: every node keeps its own trials' runs (run_parent), this one included.
    nodes = " (each node of a cluster keeps its own trials' runs there)" if is_uri(results_dir) else ""
    return (f"[{sweep}] W&B: {n} offline runs in {where}{nodes}; upload them with: "
            f"wandb sync --project {shlex.quote(str(project))} {shlex.quote(str(where))}/offline-run-*")


def log_sweep_summary(
    results_dir: str | Path, *, project: str, mode: str, sweep: str, dataset: str
) -> str | None:
    """The sweep's summary run (see the module docstring); online, also the chosen trials' test metrics.

    Called by the driver when a sweep ends. Never raises: W&B trouble at the end of a sweep is reported
    as a warning, the results on disk being complete either way.

    Returns:
        The summary run's directory (``<results>/<sweep>/wandb/offline-run-*``, ``run-*`` online), or
        None when there is nothing to log (no group finished) or logging failed.
    """
    try:
        return _log_sweep_summary(str(results_dir), project, mode, sweep, dataset)
    except Exception as exc:  # noqa: BLE001 (see the docstring)
        print(f"[{sweep}] warning: W&B summary run not written: {exc!r}", file=sys.stderr)
        return None


def _log_sweep_summary(results_dir: str, project: str, mode: str, sweep: str, dataset: str) -> str | None:
    import wandb

    from adgan.models import DETECTORS
    from adgan.sweep.best import export
    from adgan.sweep.results import read_table

    rows = read_table(results_dir, "best", missing_ok=True)
    if not rows or mode == "disabled":
        return None
    # A resumed sweep that chose nothing new (e.g. resumed after it had finished) logs no second summary run.
    marker = Path(run_parent(results_dir)) / "wandb" / SUMMARY_MARKER
    key = {"best_sha256": hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest(),
           "mode": mode, "project": project}
    earlier = _summary_logged(marker, key)
    if earlier:
        print(f"[{sweep}] W&B: the summary run of these results exists: {earlier}", file=sys.stderr)
        return earlier
    for r in rows:  # the family and class name, also for rows of an older schema
        r.setdefault("family", DETECTORS.get(r["model"]).family if r.get("model") in DETECTORS.names()
                     else None)
        r.setdefault("class_name", str(r.get("anomaly_class")))
    if mode == "online":
        try:
            n = add_test_metrics(project, sweep, rows)
            print(f"[{sweep}] W&B: test metrics added to the runs of {n} chosen trials", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 (the summary run below still carries them)
            print(f"[{sweep}] warning: W&B: test metrics not added to the trials' runs: {exc!r}",
                  file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="adgan-wandb-export-") as tmp:
        try:
            exported = export(results_dir, tmp, per="class")
        except Exception as exc:  # noqa: BLE001 (no checkpoint to export: tables without artifacts)
            print(f"[{sweep}] warning: W&B: no checkpoints exported as artifacts: {exc}", file=sys.stderr)
            exported = []
        per_class = [json.loads((p / "sweep_result.json").read_text()) for p in exported]
        run = wandb.init(
            project=project,
            dir=run_parent(results_dir),
            mode=mode,
            group=f"{sweep}/summary",
            name=f"{sweep}-summary",
            job_type="sweep-summary",
            tags=run_tags(sweep, dataset),
            config={"sweep": sweep, "dataset": dataset, "n_groups": len(rows)},
            reinit="finish_previous",
            settings=wandb.Settings(**_SETTINGS),
        )
        try:
            run.log({
                "best_per_group": _table(_table_rows(rows)),
                "best_per_class": _table(_table_rows(per_class)),
            })
            run.summary["groups"] = {r["group_id"]: _test_record(r) for r in rows}
            for path in exported:
                result = json.loads((path / "sweep_result.json").read_text())
                art = wandb.Artifact(
                    _artifact_name(f"{sweep}-{path.name}"),
                    type="model",
                    description=f"adgan {result.get('model')} for {dataset} class {result.get('class_name')} "
                                "(chosen on validation; `adgan score --checkpoint DIR`)",
                    metadata=_test_record(result) | {"group_id": result.get("group_id")},
                )
                # W&B stages a copy (offline: kept in its data directory until `wandb sync` uploads it), so
                # the temporary export can go.
                art.add_dir(str(path))
                run.log_artifact(art)
            run_dir = str(Path(run.dir).parent)
        finally:
            run.finish()
            wandb.teardown()
    if exported:  # (without its checkpoints, a later resume that finds them logs the summary run again)
        write_atomic(marker, json.dumps({**key, "run_dir": run_dir}))
    return run_dir


def _summary_logged(marker: Path, key: Mapping[str, Any]) -> str | None:
    """The directory of the summary run ``marker`` records for ``key`` (the best rows' sha256, the mode and
    the project), if it is still there; else None."""
    try:
        earlier = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    run_dir = str(earlier.get("run_dir"))
    return run_dir if all(earlier.get(k) == v for k, v in key.items()) and Path(run_dir).is_dir() else None


def _artifact_name(name: str) -> str:
    """W&B artifact names allow letters, digits, dashes, underscores and dots."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:128]
