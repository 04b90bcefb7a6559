"""The numbers behind a report, as pandas tables computed from a :class:`SweepResults`.

Model selection here follows the sweep's rule: whatever is chosen (a model's loss case for a class, the
best GAN or the best baseline of a class) is chosen on **validation** AUPRC; test figures are only read
off the chosen rows. Seeds of one (dataset, model, loss case, class) are averaged (mean and std).
Every function returns None, with a note appended to ``notes``, when its inputs are missing.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from adgan.report.load import (
    GROUP_KEYS,
    SweepResults,
    first_column,
    has_columns,
    meta_value,
    missing_columns,
    model_family,
)

CLASS_KEYS = ["dataset", "model", "loss_case", "anomaly_class"]
METRICS = (
    "val_auprc", "val_auroc", "test_auprc", "test_auroc", "test_auprc_trapz", "test_f1", "test_precision",
    "test_recall", "test_threshold", "test_q", "fit_seconds", "score_seconds",
)
STOPPED = "stopped early"
# Where sweep metadata may hold the budget: the budget actually used first (a spec's `budget` is its
# default, which a named budget such as `--budget full` overrides).
BUDGET_KEYS = ("effective_budget", "budget_used", "spec.budget", "budget")


def config_values(frame: pd.DataFrame, key: str) -> pd.Series:
    """Per row, ``key`` of the trial config: a plain column, or a field of the JSON ``config`` column."""
    col = first_column(frame, [key])
    if col is not None:
        return frame[col]
    if "config" not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def pick(text: Any) -> Any:
        if isinstance(text, dict):
            return text.get(key)
        try:
            cfg = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            return None
        return cfg.get(key) if isinstance(cfg, dict) else None

    return frame["config"].map(pick)


def group_best(res: SweepResults, notes: list[str]) -> pd.DataFrame | None:
    """One row per finished group (``best.parquet``), with ``fit_seconds``/``score_seconds`` of the chosen
    trial joined from ``trials.parquet`` when ``best`` lacks them."""
    best = res.best
    if best is None or len(best) == 0:
        notes.append("No finished group yet (best.parquet is missing or empty): per-class results are "
                     "left out.")
        return None
    lacking = missing_columns(best, ["model", "dataset", "anomaly_class", "test_auprc"])
    if lacking:
        notes.append(f"best.parquet lacks {', '.join(lacking)}: per-class results are left out.")
        return None
    best = best.copy()
    trials = res.trials
    for col in ("fit_seconds", "score_seconds"):
        if col in best.columns:
            continue
        if has_columns(trials, ["trial_id", col]) and "trial_id" in best.columns:
            best[col] = best["trial_id"].map(trials.drop_duplicates("trial_id").set_index("trial_id")[col])
        else:
            best[col] = np.nan
    return best


def per_class(best: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every metric per (dataset, model, loss case, class), with ``test_auprc_std``
    and ``n_seeds``."""
    cols = [m for m in METRICS if m in best.columns]
    grouped = best.groupby(CLASS_KEYS, sort=True)
    out = grouped[cols].mean()
    out["test_auprc_std"] = grouped["test_auprc"].std(ddof=1) if len(best) else np.nan
    out["n_seeds"] = grouped.size()
    if "class_name" in best.columns:
        out["class_name"] = grouped["class_name"].first()
    return out.reset_index()


def _pick_on_validation(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group, the row with the highest mean validation AUPRC (missing validation sorts last)."""
    key = frame["val_auprc"] if "val_auprc" in frame.columns else pd.Series(np.nan, index=frame.index)
    ranked = frame.assign(_key=key.fillna(-math.inf)).sort_values([*by, "_key"], ascending=[True] * len(by)
                                                                   + [False], kind="stable")
    return ranked.groupby(by, sort=True).head(1).drop(columns="_key").reset_index(drop=True)


def chosen_per_model(classes: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Per (dataset, model, class), the loss case with the best validation AUPRC."""
    if "val_auprc" not in classes.columns:
        notes.append("best.parquet has no val_auprc: a model's loss case per class cannot be chosen on "
                     "validation, so the first loss case is shown.")
    return _pick_on_validation(classes, ["dataset", "model", "anomaly_class"])


def gan_vs_baseline(chosen: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Per (dataset, class): the best GAN and the best baseline (each chosen on validation AUPRC), their
    test AUPRC and the difference GAN - baseline."""
    fam = chosen["model"].map(model_family)
    unknown = sorted(chosen.loc[fam == "unknown", "model"].unique())
    if unknown:
        notes.append(f"Model(s) {', '.join(unknown)} are neither known GANs nor baselines; left out of "
                     "the GAN-vs-baseline comparison.")
    gans = _pick_on_validation(chosen[fam == "gan"], ["dataset", "anomaly_class"])
    bases = _pick_on_validation(chosen[fam == "baseline"], ["dataset", "anomaly_class"])
    if gans.empty or bases.empty:
        notes.append("The GAN-vs-baseline comparison needs finished groups of at least one GAN and one "
                     f"baseline (found {len(gans)} class(es) with a GAN, {len(bases)} with a baseline).")
        return None
    cols = ["dataset", "anomaly_class", "model", "loss_case", "test_auprc"]
    merged = gans[cols].merge(bases[cols], on=["dataset", "anomaly_class"], suffixes=("_gan", "_base"))
    if merged.empty:
        notes.append("No class has both a finished GAN group and a finished baseline group yet.")
        return None
    merged["diff"] = merged["test_auprc_gan"] - merged["test_auprc_base"]
    return merged


def quality_vs_cost(chosen: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Per (dataset, model): classes, mean test AUPRC/AUROC of the chosen configurations, and the mean
    fit and scoring seconds of the chosen trials."""
    if chosen["fit_seconds"].isna().all() and chosen["score_seconds"].isna().all():
        notes.append("No fit/score times recorded (trials.parquet lacks fit_seconds/score_seconds or the "
                     "trial ids do not match): the quality-vs-cost table is left out.")
        return None
    agg: dict[str, tuple[str, str]] = {
        "classes": ("anomaly_class", "nunique"),
        "test_auprc": ("test_auprc", "mean"),
        "fit_seconds": ("fit_seconds", "mean"),
        "score_seconds": ("score_seconds", "mean"),
    }
    if "test_auroc" in chosen.columns:
        agg["test_auroc"] = ("test_auroc", "mean")
    out = chosen.groupby(["dataset", "model"], sort=True).agg(**agg).reset_index()
    out["cost_seconds"] = out["fit_seconds"].fillna(0) + out["score_seconds"].fillna(0)
    out["family"] = out["model"].map(model_family)
    return out


def kdd_rows(chosen: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """The KDD99 rows (precision/recall/F1 at the threshold used), one per model."""
    kdd = chosen[chosen["dataset"].str.startswith("kdd")]
    if kdd.empty:
        return None
    lacking = missing_columns(kdd, ["test_precision", "test_recall", "test_f1"])
    if lacking or kdd[["test_precision", "test_recall", "test_f1"]].isna().all().all():
        notes.append(f"best.parquet lacks {', '.join(lacking) or 'values of test precision/recall/F1'}: "
                     "the KDD99 table is left out.")
        return None
    return kdd.reset_index(drop=True)


def max_epochs_of(res: SweepResults, trials: pd.DataFrame) -> pd.Series:
    """The epoch budget of each trial: ``max_epochs`` column, else the spec's budget, else the config's
    ``epochs``; 1 for baselines (one-shot fits report a single epoch)."""
    values = pd.Series(np.nan, index=trials.index, dtype=float)
    if "max_epochs" in trials.columns:
        values = pd.to_numeric(trials["max_epochs"], errors="coerce")
    spec_max = meta_value(res.meta, [f"{b}.max_epochs" for b in BUDGET_KEYS] + ["max_epochs"])
    if spec_max is not None:
        values = values.fillna(float(spec_max))
    values = values.fillna(pd.to_numeric(config_values(trials, "epochs"), errors="coerce"))
    baseline = trials["model"].map(model_family) == "baseline" if "model" in trials.columns else False
    return values.mask(baseline, 1.0)


def resources(res: SweepResults) -> tuple[float | None, float | None]:
    """(CPUs, GPUs) per trial from the sweep metadata; None where not recorded.

    A spec (``spec.json``) without a ``resources`` key means the spec's defaults: 1 CPU, no GPU.
    """
    cpus = meta_value(res.meta, ["resources.cpus", "cpus", "resources_per_trial.cpu", "spec.resources.cpus"])
    gpus = meta_value(res.meta, ["resources.gpu", "gpu", "gpus", "resources_per_trial.gpu",
                                 "spec.resources.gpu"])
    if res.meta_file == "spec.json" and "models" in res.meta:
        cpus = 1 if cpus is None else cpus
        gpus = 0 if gpus is None else gpus
    try:
        return (float(cpus) if cpus is not None else None, float(gpus) if gpus is not None else None)
    except (TypeError, ValueError):
        return None, None


def sweep_cost(res: SweepResults, notes: list[str]) -> pd.DataFrame | None:
    """Per group: trials (by status), epochs run against the budget, trial hours and CPU/GPU hours.

    Falls back to ``epochs.parquet`` (training seconds only) when ``trials.parquet`` is not there yet.
    """
    keys = list(GROUP_KEYS)
    trials = res.trials
    if has_columns(trials, keys):
        t = trials.copy()
        t["max_epochs"] = max_epochs_of(res, t)
        if "epochs_run" not in t.columns:
            t["epochs_run"] = np.nan
        wall = "wall_seconds" if "wall_seconds" in t.columns else None
        if wall is None:
            notes.append("trials.parquet lacks wall_seconds: hours are left out.")
        t["_wall"] = t[wall] if wall else np.nan
        # A trial that ran on the CPU held no GPU, whatever the spec asked (the sweep falls back to the
        # CPU on a cluster without GPUs and records the device in the trial's config).
        t["_on_cpu"] = config_values(t, "device").astype(str).str.startswith("cpu")
        t["_gpu_wall"] = t["_wall"].where(~t["_on_cpu"], 0.0)
        status = t["status"] if "status" in t.columns else pd.Series("unknown", index=t.index)
        t["_stopped"] = status == STOPPED
        t["_failed"] = status.isin(["diverged", "errored"])
        out = t.groupby(keys, sort=True).agg(
            trials=("model", "size"), stopped=("_stopped", "sum"), failed=("_failed", "sum"),
            epochs_run=("epochs_run", "sum"), budget=("max_epochs", "sum"), wall_seconds=("_wall", "sum"),
            gpu_wall_seconds=("_gpu_wall", "sum"),
        ).reset_index()
        out["budget"] = out["budget"].where(out["budget"] > 0)
        out["source"] = "trials"
    elif has_columns(res.epochs, [*keys, "trial_id"]):
        e = res.epochs
        notes.append("trials.parquet is not there yet: sweep cost is estimated from epochs.parquet "
                     "(training and validation seconds of the epochs reported so far).")
        secs = e.get("epoch_seconds", pd.Series(0.0, index=e.index)).fillna(0) + e.get(
            "eval_seconds", pd.Series(0.0, index=e.index)).fillna(0)
        out = e.assign(_s=secs).groupby(keys, sort=True).agg(
            trials=("trial_id", "nunique"), epochs_run=("trial_id", "size"), wall_seconds=("_s", "sum"),
        ).reset_index()
        out["gpu_wall_seconds"] = out["wall_seconds"]
        out["stopped"] = np.nan
        out["failed"] = np.nan
        out["budget"] = np.nan
        out["source"] = "epochs"
    else:
        notes.append("Neither trials.parquet nor epochs.parquet has the group keys: sweep cost left out.")
        return None
    cpus, gpus = resources(res)
    hours = out["wall_seconds"] / 3600.0
    out["trial_hours"] = hours
    out["cpu_hours"] = hours * cpus if cpus is not None else np.nan
    out["gpu_hours"] = out["gpu_wall_seconds"] / 3600.0 * gpus if gpus is not None else np.nan
    if cpus is None:
        notes.append("The sweep's resources per trial are not recorded (no sweep metadata file): CPU/GPU "
                     "hours are left out; trial hours (summed trial wall time) are shown.")
    planned = meta_value(res.meta, [f"{b}.trials_per_group" for b in BUDGET_KEYS] + ["trials_per_group"])
    out["planned_trials"] = float(planned) if planned is not None else np.nan
    return out.sort_values(["dataset", "anomaly_class", "model", "loss_case", "seed"], ignore_index=True)


def progress(res: SweepResults) -> pd.DataFrame | None:
    """Per group seen so far: trials seen and ended, epochs reported, best validation AUPRC so far, and
    whether the group finished (has a best row); NaN where the table that would tell is missing."""
    keys = list(GROUP_KEYS)
    frames = []
    if has_columns(res.epochs, [*keys, "trial_id"]):
        e = res.epochs
        val = e["val_auprc"] if "val_auprc" in e.columns else pd.Series(np.nan, index=e.index)
        frames.append(e.assign(_v=val).groupby(keys).agg(
            trials=("trial_id", "nunique"), epochs=("trial_id", "size"), best_val_so_far=("_v", "max")))
    if has_columns(res.trials, [*keys, "trial_id"]):
        t = res.trials
        val = t["best_val_auprc"] if "best_val_auprc" in t.columns else pd.Series(np.nan, index=t.index)
        ended = t.assign(_v=val).groupby(keys).agg(trials_ended=("trial_id", "nunique"), _tv=("_v", "max"))
        frames.append(ended)
    if not frames:
        return None
    out = pd.concat(frames, axis=1)
    for col in ("trials", "epochs", "trials_ended", "best_val_so_far", "_tv"):
        if col not in out.columns:
            out[col] = np.nan
    # A trial is seen once it reported an epoch or ended (an errored trial may have no epoch row).
    out["trials"] = out[["trials", "trials_ended"]].max(axis=1)
    out["best_val_so_far"] = out[["best_val_so_far", "_tv"]].max(axis=1)
    out = out.drop(columns="_tv").reset_index()
    finished: set[tuple[Any, ...]] = set()
    if has_columns(res.best, keys):
        finished = set(map(tuple, res.best[keys].itertuples(index=False, name=None)))
    out["finished"] = [tuple(r) in finished for r in out[keys].itertuples(index=False, name=None)]
    return out.sort_values(["dataset", "anomaly_class", "model", "loss_case", "seed"], ignore_index=True)
