"""Sections on how the runs went: learning curves and what the sweep cost."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from adgan.errors import clip
from adgan.report import analysis, figures
from adgan.report.doc import Figure, Section, Table
from adgan.report.load import GROUP_KEYS, SweepResults, has_columns
from adgan.report.sections import Context, numeric
from adgan.sweep.best import error_reasons


def learning_curves(ctx: Context) -> Section:
    s = Section("learning-curves", "Learning curves", paragraphs=[
        "Validation AUPRC per epoch. Per group, the best trial is drawn bold (the trial chosen for the "
        "group where the group has finished, else the best so far); the other trials faintly, dotted where "
        "ASHA stopped them. Baselines fit in one step and have no curve."])
    res = ctx.res
    e = res.epochs
    if not has_columns(e, [*GROUP_KEYS, "trial_id", "epoch", "val_auprc"]):
        s.notes.append("epochs.parquet is missing or lacks trial_id/epoch/val_auprc: no learning curves.")
        return s
    e = e[e["family"] != "baseline"]
    if e.empty:
        s.notes.append("Only baselines in this sweep: no learning curves.")
        return s
    status: dict[str, str] = {}
    if has_columns(res.trials, ["trial_id", "status"]):
        status = dict(zip(res.trials["trial_id"], res.trials["status"], strict=False))
    best_trials = _best_trials(res)
    for (ds, model, case), rows in e.groupby(["dataset", "model", "loss_case"], sort=True):
        title = f"{ds} / {model}" + ("" if case == "default" else f" / {case}")
        png = figures.learning_curves(rows, status=status, best_trials=best_trials,
                                 labels=ctx.labels_of(ds, rows["anomaly_class"].unique()), title=title)
        s.blocks.append(Figure(f"curves-{ds}-{model}-{case}".replace("+", "plus"),
                               f"{title}: validation AUPRC per epoch", png))
    return s


def _best_trials(res: SweepResults) -> set[str]:
    """One trial id per group: best.parquet's choice, else the best validation AUPRC reported so far."""
    keys = list(GROUP_KEYS)
    chosen: dict[tuple[Any, ...], str] = {}
    if has_columns(res.best, [*keys, "trial_id"]):
        for r in res.best[[*keys, "trial_id"]].itertuples(index=False, name=None):
            chosen[tuple(r[:-1])] = str(r[-1])
    e = res.epochs
    if has_columns(e, [*keys, "trial_id", "val_auprc"]):
        top = e.assign(_v=e["val_auprc"].fillna(-math.inf)).sort_values("_v", ascending=False)
        for r in top.drop_duplicates(keys)[[*keys, "trial_id"]].itertuples(index=False, name=None):
            chosen.setdefault(tuple(r[:-1]), str(r[-1]))
    return set(chosen.values())


def sweep_cost(ctx: Context) -> Section:
    s = Section("sweep-cost", "What the sweep cost", paragraphs=[
        "Per group: trials run (of those planned), how many ASHA stopped early and how many diverged or "
        "errored, epochs run against the full budget (max epochs x trials; 1 epoch per baseline trial), "
        "trial hours (summed wall time of the trials) and CPU/GPU hours (trial hours x the resources "
        "each trial held)."])
    notes: list[str] = []
    cost = analysis.sweep_cost(ctx.res, notes)
    s.notes += notes
    if cost is None:
        return s
    rows = []
    for r in cost.itertuples(index=False):
        # "run/planned"; a planned count below the trials run is stale metadata (another budget): not shown.
        planned = r.planned_trials if not pd.isna(r.planned_trials) and r.planned_trials >= r.trials else None
        trials = str(int(r.trials)) + ("" if planned is None else f"/{int(planned)}")
        share = r.epochs_run / r.budget if not pd.isna(r.budget) and r.budget > 0 else np.nan
        rows.append([r.dataset, ctx.label(r.dataset, r.anomaly_class), r.model, r.loss_case, str(r.seed),
                     trials,
                     numeric(r.stopped, 0), numeric(r.failed, 0), numeric(r.epochs_run, 0),
                     numeric(r.budget, 0), "-" if pd.isna(share) else f"{share:.0%}",
                     numeric(r.trial_hours, 3), numeric(r.cpu_hours, 3), numeric(r.gpu_hours, 3)])
    budget = cost["budget"].sum(min_count=1)
    total_share = cost["epochs_run"].sum() / budget if not pd.isna(budget) and budget > 0 else np.nan
    rows.append(["total", "", "", "", "", numeric(cost["trials"].sum(), 0),
                 numeric(cost["stopped"].sum(min_count=1), 0),
                 numeric(cost["failed"].sum(min_count=1), 0), numeric(cost["epochs_run"].sum(), 0),
                 numeric(budget, 0),
                 "-" if pd.isna(total_share) else f"{total_share:.0%}",
                 numeric(cost["trial_hours"].sum(), 3), numeric(cost["cpu_hours"].sum(min_count=1), 3),
                 numeric(cost["gpu_hours"].sum(min_count=1), 3)])
    s.blocks.append(Table("Cost per group", [
        "dataset", "class", "model", "loss case", "seed", "trials", "stopped early", "diverged/errored",
        "epochs run", "epoch budget", "share of budget", "trial h", "CPU h", "GPU h"], rows))
    if has_columns(ctx.res.trials, ["status", "message"]):
        reasons = error_reasons(ctx.res.trials.to_dict("records"))
        if reasons:  # the counts above say how many; this says why (as adgan best does)
            rows = [[str(n), clip(reason, 300), group, trial] for n, reason, group, trial in reasons]
            s.blocks.append(Table("Why trials errored", ["trials", "reason", "e.g. group", "trial"], rows))
    return s
