"""The numbers behind a report, as pandas tables computed from a :class:`SweepResults`.

Model selection here follows the sweep's rule (:mod:`adgan.sweep.recommend`, the same tie-breaks): whatever
is chosen (a model's loss case for a class, the best GAN or the best baseline of a class) is chosen on
**validation** AUPRC; test figures are only read off the chosen rows. Seeds of one (dataset, model, loss
case, class) are averaged (mean and std). A function whose table is not written yet (a sweep still
running) returns None with a note appended to ``notes``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from adgan.report.load import GROUP_KEYS, SweepResults, config_values, has_columns

CLASS_KEYS = ["dataset", "model", "loss_case", "anomaly_class"]
METRICS = (
    "val_auprc", "val_auroc", "test_auprc", "test_auroc", "test_auprc_trapz", "test_f1", "test_precision",
    "test_recall", "test_threshold", "test_q", "fit_seconds", "score_seconds",
)
STOPPED = "stopped early"


def group_best(res: SweepResults, notes: list[str]) -> pd.DataFrame | None:
    """One row per finished group with a chosen trial (``best.parquet``), with the chosen trial's
    ``score_seconds`` joined from ``trials.parquet`` (and ``fit_seconds`` where version-1 rows lack it)."""
    best = res.best
    if best is None or len(best) == 0 or not best["checkpoint"].notna().any():
        notes.append("No finished group yet (best.parquet is missing or empty): per-class results are "
                     "left out.")
        return None
    best = best[best["checkpoint"].notna()].copy()
    trials = res.trials
    for col in ("fit_seconds", "score_seconds"):
        if has_columns(trials, ["trial_id", col]):
            joined = best["trial_id"].map(trials.drop_duplicates("trial_id").set_index("trial_id")[col])
            best[col] = best[col].fillna(joined) if col in best.columns else joined
        elif col not in best.columns:
            best[col] = np.nan
    return best


def per_class(best: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every metric per (dataset, model, loss case, class), with ``test_auprc_std``
    and ``n_seeds``."""
    cols = [m for m in METRICS if m in best.columns]
    grouped = best.groupby(CLASS_KEYS, sort=True)
    out = grouped[cols].mean()
    out["test_auprc_std"] = grouped["test_auprc"].std(ddof=1) if len(best) else np.nan
    if "test_threshold" in best.columns:  # score scales differ between seeds' settings: a mean means nothing
        out["test_threshold_min"] = grouped["test_threshold"].min()
        out["test_threshold_max"] = grouped["test_threshold"].max()
    out["n_seeds"] = grouped.size()
    out["class_name"] = grouped["class_name"].first()
    out["family"] = grouped["family"].first()
    for col in ("n_test", "n_test_anomalies", "n_val_anomalies"):  # split sizes: the same for every seed
        if col in best.columns:
            out[col] = grouped[col].first()
    return out.reset_index()


def _pick_on_validation(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group, the first row in the order of ``adgan.sweep.recommend.Candidate.rank`` (the order
    ``adgan best`` and ``adgan export`` choose in): highest mean validation AUPRC, then validation AUROC,
    then a baseline before a GAN, then model and loss case names. Nothing that varies between identical
    runs (timings) breaks a tie."""
    ranked = frame.assign(
        _v=-frame["val_auprc"].fillna(-math.inf), _a=-frame["val_auroc"].fillna(-math.inf),
        _g=frame["family"] != "baseline",
    ).sort_values([*by, "_v", "_a", "_g", "model", "loss_case"], kind="stable")
    return ranked.groupby(by, sort=True).head(1).drop(columns=["_v", "_a", "_g"]).reset_index(drop=True)


def chosen_per_model(classes: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, class), the loss case with the best validation AUPRC."""
    return _pick_on_validation(classes, ["dataset", "model", "anomaly_class"])


def gan_vs_baseline(chosen: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Per (dataset, class): the best GAN and the best baseline (each chosen on validation AUPRC), their
    test AUPRC and the difference GAN - baseline."""
    fam = chosen["family"]
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
    out["family"] = out["model"].map(chosen.drop_duplicates("model").set_index("model")["family"])
    return out


def prf_rows(chosen: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """The rows with test precision/recall/F1 (at the protocol's threshold: the test split's top share
    flagged), one per (dataset, model, class); None (with a note) where best.parquet holds none."""
    cols = ["test_precision", "test_recall", "test_f1"]
    if chosen.empty or not has_columns(chosen, cols) or chosen[cols].isna().all().all():
        notes.append("best.parquet holds no test precision/recall/F1: the tables are left out.")
        return None
    return chosen.dropna(subset=["test_f1"]).reset_index(drop=True)


def max_epochs_of(trials: pd.DataFrame) -> pd.Series:
    """The epoch budget of each trial (its ``max_epochs``; 1 for baselines, which fit in one step)."""
    return pd.to_numeric(trials["max_epochs"], errors="coerce").mask(trials["family"] == "baseline", 1.0)


def sweep_cost(res: SweepResults, notes: list[str]) -> pd.DataFrame | None:
    """Per group: trials (by status), epochs run against the budget, trial hours and CPU/GPU hours.

    Falls back to ``epochs.parquet`` (training seconds only) when ``trials.parquet`` is not there yet.
    """
    keys = list(GROUP_KEYS)
    trials = res.trials
    if has_columns(trials, keys):
        t = trials.copy()
        t["max_epochs"] = max_epochs_of(t)
        t["_wall"] = t["wall_seconds"]
        # A trial that ran on the CPU held no GPU, whatever the spec asked (the sweep falls back to the
        # CPU on a cluster without GPUs and records the device in the trial's config).
        t["_on_cpu"] = config_values(t, "device").astype(str).str.startswith("cpu")
        t["_gpu_wall"] = t["_wall"].where(~t["_on_cpu"], 0.0)
        t["_stopped"] = t["status"] == STOPPED
        t["_failed"] = t["status"].isin(["diverged", "errored"])
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
        secs = e["epoch_seconds"].fillna(0) + e["eval_seconds"].fillna(0)
        out = e.assign(_s=secs).groupby(keys, sort=True).agg(
            trials=("trial_id", "nunique"), epochs_run=("trial_id", "size"), wall_seconds=("_s", "sum"),
        ).reset_index()
        out["gpu_wall_seconds"] = out["wall_seconds"]
        out["stopped"] = np.nan
        out["failed"] = np.nan
        out["budget"] = np.nan
        out["source"] = "epochs"
    else:
        notes.append("No trial has reported yet: sweep cost left out.")
        return None
    cpus, gpus = res.resources
    hours = out["wall_seconds"] / 3600.0
    out["trial_hours"] = hours
    out["cpu_hours"] = hours * cpus if cpus is not None else np.nan
    out["gpu_hours"] = out["gpu_wall_seconds"] / 3600.0 * gpus if gpus is not None else np.nan
    planned = res.budget.get("trials_per_group")
    models = res.spec.get("models") or {}
    recorded = res.spec.get("model_trials") or {}  # SweepSpec.trials as the runner planned them
    # (sweeps recorded before model_trials: a model with nothing to search ran one trial per group)
    searched = {m for m, cfg in models.items() if isinstance(cfg, dict) and cfg.get("search")}
    out["planned_trials"] = [
        float(recorded[m]) if m in recorded else np.nan if planned is None
        else float(planned) if not models or m in searched else 1.0
        for m in out["model"]
    ]
    return out.sort_values(["dataset", "anomaly_class", "model", "loss_case", "seed"], ignore_index=True)


def progress(res: SweepResults) -> pd.DataFrame | None:
    """Per group seen so far: trials seen and ended, epochs reported, best validation AUPRC so far, and
    whether the group finished (has a best row); NaN where the table that would tell is missing."""
    keys = list(GROUP_KEYS)
    frames = []
    if has_columns(res.epochs, keys):
        seen = res.epochs.groupby(keys).agg(trials=("trial_id", "nunique"), epochs=("trial_id", "size"),
                                            best_val_so_far=("val_auprc", "max"))
        frames.append(seen)
    if has_columns(res.trials, keys):
        frames.append(res.trials.groupby(keys).agg(trials_ended=("trial_id", "nunique"),
                                                   _tv=("best_val_auprc", "max")))
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
