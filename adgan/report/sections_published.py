"""The section putting published figures beside ours (MNIST EGBAD AUPRC per digit, KDD99
precision/recall/F1, CIFAR-10 AUROC), each with its source, verified flag and what differs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adgan.report import analysis
from adgan.report.doc import Section, Table
from adgan.report.load import GROUP_KEYS, SweepResults, config_values, has_columns
from adgan.report.published import compare, match_dataset
from adgan.report.sections import Context, metric4, missing_note, numeric, signed4

INTRO = (
    "Published figures beside ours where the task matches. Each row names its source and whether the "
    "figure was read from a primary table (verified) or a secondary quote. The verdict lists what differs "
    "from the paper's protocol (data source or sample, loss case, metric variant, flagged share, feature "
    "scaling); a row is called a reproduction only when nothing differs and our training budget reaches the "
    "paper's. Ours is the paper's loss case where the sweep ran it, else the loss case chosen on validation. "
    "Model selection always differs on purpose: ours picks the epoch and configuration on a validation "
    "split, while the papers report the last epoch (EGBAD) or the best epoch on the test set (GANomaly's "
    "code)."
)


METRIC_NAMES = {"auprc_trapz": "AUPRC, trapezoid", "auroc": "AUROC"}


def budgets(res: SweepResults) -> dict[tuple[str, str], tuple[float, float]]:
    """(dataset, model) -> (max epochs per trial, trials per group) of this sweep."""
    t = res.trials
    if not has_columns(t, list(GROUP_KEYS)):
        return {}
    t = t.assign(_max=analysis.max_epochs_of(t))
    per_group = t.groupby(list(GROUP_KEYS)).agg(n=("model", "size"), m=("_max", "max")).reset_index()
    out = per_group.groupby(["dataset", "model"]).agg(m=("m", "max"), n=("n", "max"))
    return {k: (float(v.m), float(v.n)) for k, v in out.iterrows()}


def scaling(res: SweepResults) -> dict[str, bool | None]:
    """dataset -> whether the trials min-max scaled features (None when unknown or mixed)."""
    out: dict[str, bool | None] = {}
    for frame in (res.best, res.trials):
        if not has_columns(frame, ["dataset"]):
            continue
        values = frame.assign(_s=config_values(frame, "scale"))
        for ds, rows in values.groupby("dataset"):
            known = {bool(v) for v in rows["_s"] if v is not None and not pd.isna(v)}
            if ds not in out or out[ds] is None:
                out[ds] = known.pop() if len(known) == 1 else None
    return out


def train_caps(res: SweepResults) -> dict[tuple[str, str], int | None]:
    """(dataset, model) -> the largest ``max_train`` (subsample of the training normals) in that model's
    trial configs (per model: baselines train on the whole split while the GANs of the sweep subsample)."""
    out: dict[tuple[str, str], int | None] = {}
    if has_columns(res.trials, ["dataset", "model"]):
        caps = res.trials.assign(_m=pd.to_numeric(config_values(res.trials, "max_train"), errors="coerce"))
        for (ds, model), rows in caps.groupby(["dataset", "model"]):
            out[(ds, model)] = None if rows["_m"].isna().any() else int(rows["_m"].max())
    return out


def inner_norms(res: SweepResults) -> dict[tuple[str, str, str], bool | None]:
    """(dataset, model, loss case) -> whether the groups' chosen trials standardised the features inside
    their networks (``tabular_norm``, a GAN option on tables; the published code does not): True, False,
    or None where the rows do not say (results of an adgan that recorded only the config's set keys)."""
    out: dict[tuple[str, str, str], bool | None] = {}
    best = res.best
    if has_columns(best, ["dataset", "model", "loss_case", "config"]):
        rows = best.assign(_n=config_values(best, "tabular_norm"), _resolved=config_values(best, "bf16"))
        for key, part in rows.groupby(["dataset", "model", "loss_case"]):
            if any(v is True for v in part["_n"]):
                out[key] = True
            elif part["_resolved"].notna().all() or not _has_option(key[1], "tabular_norm"):
                out[key] = False  # every default recorded (no key: no such option), or none to record
            else:
                out[key] = None
    return out


def _has_option(model: str, option: str) -> bool:
    """Whether ``model``'s hyperparameters include ``option``, asked of the registry; only results of an
    older adgan (config rows holding the set keys alone) need it, so the report imports the models (and
    torch) for those only. True where the model is not registered here (not known: not ruled out)."""
    import dataclasses

    from adgan.models import DETECTORS

    if model not in DETECTORS:
        return True
    return option in {f.name for f in dataclasses.fields(DETECTORS.get(model).Config)}


def published_section(ctx: Context) -> Section:
    s = Section("published", "Published figures beside ours", paragraphs=[INTRO])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    ours = sorted(ctx.chosen["dataset"].unique())
    budget, scaled, caps = budgets(ctx.res), scaling(ctx.res), train_caps(ctx.res)
    shown = 0
    for ds, metric, title in (("mnist", "auprc_trapz", "MNIST, one digit anomalous: EGBAD AUPRC per digit "
                               "(trapezoid AUPRC, as the paper computes it)"),
                              ("cifar10", "auroc", "CIFAR-10, one class anomalous: AUROC per class")):
        if match_dataset(ds, ours) is None:
            continue
        shown += 1
        cmp = compare(ctx.published, ctx.chosen, dataset=ds, metric=metric, budget=budget, scaled=scaled,
                      max_train=caps, by_case=ctx.classes)
        ran = set(ctx.chosen.loc[ctx.chosen["dataset"] == match_dataset(ds, ours), "anomaly_class"])
        cmp = cmp[(cmp["model"] != "") & cmp["anomaly_class"].isin(ran)]  # (classes this sweep ran)
        rows = [[ctx.label(r.dataset or ds, r.anomaly_class), r.paper_model,
                 metric4(r.published) + ("" if pd.isna(r.std) else f" ± {r.std:.3f}"),
                 "yes" if r.verified else "no", r.source, r.dataset or "-", r.loss_case or "-",
                 metric4(r.ours),
                 numeric(r.n_seeds, 0), signed4(r.diff), r.budget or "-", r.verdict]
                for r in cmp.itertuples(index=False)]
        s.blocks.append(Table(title, ["class", "paper model", "published", "verified", "source", "our data",
                                      "our loss case", f"ours (test {METRIC_NAMES[metric]})", "seeds",
                                      "ours - published",
                                      "our budget", "verdict"], rows))
    if match_dataset("kdd99", ours) is not None:
        shown += 1
        s.blocks.append(_kdd_table(ctx, budget, scaled, caps))
    if not shown:
        s.notes.append(f"This sweep has no results on a dataset with published figures here (MNIST, KDD99, "
                       f"CIFAR-10); its datasets: {', '.join(ours)}.")
    return s


def _kdd_table(ctx: Context, budget: dict[tuple[str, str], tuple[float, float]],
               scaled: dict[str, bool | None], caps: dict[tuple[str, str], int | None]) -> Table:
    norms = inner_norms(ctx.res)
    parts = {m: compare(ctx.published, ctx.chosen, dataset="kdd99", metric=m, budget=budget, scaled=scaled,
                        max_train=caps, by_case=ctx.classes, inner_norm=norms)
             for m in ("precision", "recall", "f1")}
    f1 = parts["f1"]
    rows = []
    for i, r in enumerate(f1.itertuples(index=False)):
        pub = " / ".join(metric4(parts[m].iloc[i]["published"]) for m in ("precision", "recall", "f1"))
        ours = " / ".join(metric4(parts[m].iloc[i]["ours"]) for m in ("precision", "recall", "f1"))
        rows.append([r.paper_model, pub, "yes" if r.verified else "no", r.source, r.model or "-",
                     r.loss_case or "-", "-" if np.isnan(r.ours) else ours, numeric(r.n_seeds, 0),
                     signed4(r.diff), r.budget or "-", r.verdict])
    return Table("KDD99 (`normal.` is the anomaly): precision / recall / F1", [
        "paper model", "published P / R / F1", "verified", "source", "our model", "our loss case",
        "ours P / R / F1 (mean over seeds)", "seeds", "F1: ours - published", "our budget", "verdict"], rows)
