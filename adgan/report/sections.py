"""The report's sections, each built from the analysis tables; a section whose inputs are missing says
so in a note instead of failing, so a sweep still running (or an older schema) still gets a report."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from adgan.metrics import cutoff_order
from adgan.report import analysis, figures
from adgan.report.doc import Figure, Section, Table
from adgan.report.load import SweepResults, class_label, has_columns
from adgan.report.published import Published
from adgan.sweep.recommend import (
    Recommendation,
    fit_rows,
    groups_without_result,
    recommend,
    test_at_cutoffs,
    unanswered,
    unfinished_text,
)

SELECTION = ("Selection rule: within a group the configuration and epoch are chosen on validation AUPRC; "
             "a class's recommended detector, a model's loss case per class, the best GAN and the best "
             "baseline of a class are also chosen on (mean) validation AUPRC, with the deterministic "
             "tie-breaks of docs/sweeps.md. Test figures are read off the chosen rows as the estimate for "
             "them and never take part in a choice; they are averaged over seeds (± is the standard "
             "deviation over seeds where there are several).")


def metric4(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float | np.floating) and not math.isfinite(x)) else f"{x:.4f}"


def signed4(x: Any) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:+.4f}"


def numeric(x: Any, nd: int = 2) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.{nd}f}"


@dataclass
class Context:
    """Everything the section builders share."""

    res: SweepResults
    published: Published
    best: pd.DataFrame | None = None
    classes: pd.DataFrame | None = None  # per (dataset, model, loss case, class), mean over seeds
    chosen: pd.DataFrame | None = None  # per (dataset, model, class), loss case chosen on validation
    recs: list[Recommendation] = field(default_factory=list)  # per class, the recommended detector
    families: dict[str, str] = field(default_factory=dict)  # model -> gan | baseline, as rows record it
    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unfinished: str | None = None  # planned groups without a result yet (a running or interrupted sweep)

    def label(self, dataset: str, cls: int) -> str:
        return self.labels.get(dataset, {}).get(cls) or str(cls)

    def labels_of(self, dataset: str, classes: Iterable[int]) -> dict[int, str]:
        return {int(c): self.label(dataset, int(c)) for c in classes}


def make_context(res: SweepResults, published: Published) -> Context:
    ctx = Context(res=res, published=published)
    ctx.best = analysis.group_best(res, ctx.notes)
    for frame in (res.best, res.trials, res.epochs):
        if has_columns(frame, ["dataset", "anomaly_class", "class_name", "model", "family"]):
            names = frame[["dataset", "anomaly_class", "class_name"]].drop_duplicates()
            for ds, cls, name in names.itertuples(index=False):
                if isinstance(name, str) and name:
                    ctx.labels.setdefault(ds, {})[int(cls)] = class_label(int(cls), name)
            ctx.families.update(dict(zip(frame["model"], frame["family"], strict=True)))
    planned = res.spec.get("groups") or []  # (none before adgan recorded its groups)
    best_rows = res.best.to_dict("records") if has_columns(res.best, ["group_id"]) else []
    unfinished = unfinished_text(planned, groups_without_result(planned, best_rows))
    ctx.unfinished = unfinished  # (said in the Overview and beside the answer, not in every empty section)
    if ctx.best is not None:
        ctx.classes = analysis.per_class(ctx.best)
        ctx.chosen = analysis.chosen_per_model(ctx.classes)
        ctx.recs = recommend(ctx.best.to_dict("records"))
    return ctx


def model_order(models: Iterable[str], families: dict[str, str]) -> list[str]:
    """GANs first, then baselines; by name within each family."""
    rank = {"gan": 0, "baseline": 1}
    return sorted(set(models), key=lambda m: (rank.get(families.get(m, ""), 2), m))


def missing_note(section: Section, ctx: Context) -> Section:
    section.notes += ctx.notes or ["No finished group yet: nothing to show here."]
    return section


def _detector(model: str | None, case: str | None) -> str:
    if model is None:
        return "-"
    return model if case in (None, "default") else f"{model} [{case}]"


def _train_rows(row: Any) -> str:
    """The recommended detector's training normals: ``45360``, or ``10000 of 45360`` where its
    ``fit_samples`` kept a subsample; ``<= 1000`` where the row does not say its fit_samples (older
    sweeps: at most its training normals)."""
    used, n = fit_rows(row), row.get("n_train")
    if used is None:
        return f"<= {int(n)}" if isinstance(n, int | float) and not pd.isna(n) else "-"
    return str(used) if used == int(n) else f"{used} of {int(n)}"


def _rows_beside(other: Any, chosen: Any) -> str:
    """`` (fit on 10000 rows)`` where a compared detector was fit on other rows than the recommended one
    (a sweep subsamples the GANs' training normals, a baseline keeps its fit_samples): not like for like."""
    mine, theirs = fit_rows(chosen.representative), fit_rows(other.representative)
    return "" if mine is None or theirs is None or mine == theirs else f" (fit on {theirs} rows)"


def _params_text(params: Any) -> str:
    d = json.loads(params) if isinstance(params, str) and params else (params or {})
    text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(d.items()))
    return text or "-"


def _spread(mean: Any, std: Any) -> str:
    return metric4(mean) + ("" if std is None or pd.isna(std) else f" ± {std:.4f}")


def recommendation(ctx: Context) -> Section:
    """The answer: per class, the recommended detector (best validation AUPRC over every model)."""
    s = Section("recommendation", "Recommended detector per class", paragraphs=[
        "Per anomalous class, the detector to ship: of every model this sweep ran (GANs and classical "
        "baselines alike) the one with the best validation AUPRC (mean over seeds where there are several), "
        "with its settings. Its test AUPRC is the estimate for that choice, beside AUPRC's chance level (the "
        "test split's anomaly share); test figures took no part in any choice. 'One model for every class' "
        "is the single detector with the best mean validation AUPRC over the classes (what shipping one "
        "model everywhere would give); kNN is the simplest strong baseline. `adgan export` ships exactly "
        "these detectors and `adgan best` makes the same choice. The settings shown are those of the "
        "exported seed's run (each seed chose its own on validation), while the AUPRCs are means over the "
        "seeds: MODEL_CARD.md of `adgan export` gives the exported checkpoint's own test figures."])
    if ctx.unfinished:
        s.notes.append(ctx.unfinished)
    unanswered = _unanswered(ctx)
    if not ctx.recs and not unanswered:
        return missing_note(s, ctx)
    flagged = False
    for ds in sorted({r.chosen.dataset for r in ctx.recs} | set(unanswered)):
        rows = []
        for rec in (r for r in ctx.recs if r.chosen.dataset == ds):
            c, row = rec.chosen, rec.row()
            chance_ok = {True: "yes", False: "NO", None: "unknown"}[rec.beats_chance]
            flagged |= rec.beats_chance is False
            single = rec.single_model
            rows.append([
                ctx.label(ds, c.anomaly_class), _detector(c.model, c.loss_case), c.family,
                _params_text(row["params"]), _spread(c.val_auprc, c.val_auprc_std), chance_ok,
                _spread(c.test_auprc, c.test_auprc_std), metric4(rec.test_chance),
                "-" if single is None else
                f"{metric4(single.test_auprc)} ({_detector(single.model, single.loss_case)})"
                + _rows_beside(single, c),
                "-" if rec.knn is None else metric4(rec.knn.test_auprc) + _rows_beside(rec.knn, c),
                _train_rows(c.representative),
            ])
        rows += [[ctx.label(ds, cls), "no answer", "-", "no trial of this class ended with a checkpoint "
                  "(every group errored, or diverged before its first scored epoch)", *["-"] * 7]
                 for cls in unanswered.get(ds, [])]
        s.blocks.append(Table(f"{ds}: recommended detector per class", [
            "class", "recommended", "family", "settings", "val AUPRC", "beats chance (val)", "test AUPRC",
            "test chance", "one model for every class (test)", "kNN (test)", "training normals (fit)"],
            rows))
        mine = [r for r in ctx.recs if r.chosen.dataset == ds]
        if not mine:
            continue
        rec_mean = float(np.nanmean([r.chosen.test_auprc for r in mine]))
        singles = [r.single_model.test_auprc for r in mine if r.single_model is not None]
        versus = ""
        if len(singles) == len(mine) and mine[0].single_model is not None:
            versus = (f" against {float(np.nanmean(singles)):.4f} for one model everywhere "
                      f"({mine[0].single_model.model})")
        chance = float(np.nanmean([r.test_chance for r in mine]))
        s.paragraphs.append(f"{ds}: mean test AUPRC of the per-class recommendation {rec_mean:.4f}{versus}; "
                            f"chance {chance:.4f}.")
    if flagged:
        s.notes.append("NO under 'beats chance': the recommended detector's validation AUPRC is below the "
                       "95th percentile of the best of as many random rankings of that validation split as "
                       "trials were compared for the class; treat that class's answer as no better than "
                       "guessing.")
    return s


def _unanswered(ctx: Context) -> dict[str, list[int]]:
    """dataset -> the classes with finished groups (rows in best.parquet) but no recommendation: no trial
    of theirs ended with a checkpoint (``adgan best`` says "no answer" for them too)."""
    best = ctx.res.best
    if not has_columns(best, ["dataset", "anomaly_class"]):
        return {}
    out: dict[str, list[int]] = {}
    for ds, cls, _ in unanswered(ctx.recs, best[["dataset", "anomaly_class"]].to_dict("records")):
        out.setdefault(ds, []).append(cls)
    return out


def overview(ctx: Context) -> Section:
    res = ctx.res
    s = Section("overview", "Overview", paragraphs=[SELECTION])
    s.notes += res.notes + [n for n in ctx.notes if n not in res.notes]
    if ctx.unfinished:
        s.notes.append(ctx.unfinished)
    rows = [["results directory", str(res.path)], ["sweep", res.name]]
    for name in ("epochs", "trials", "best"):
        frame = res.table(name)
        rows.append([f"{name}.parquet", "not written yet" if frame is None else
                     f"{len(frame)} rows (schema version {res.schema_version})"])
    frames = [f for f in (res.best, res.trials, res.epochs) if f is not None]
    for col, what in (("dataset", "datasets"), ("model", "models")):
        values = sorted({v for f in frames if col in f.columns for v in f[col].unique()})
        if col == "model":
            values = [f"{m} ({ctx.families.get(m, '?')})" for m in values]
        rows.append([what, ", ".join(values) or "-"])
    prog = analysis.progress(res)
    if prog is not None:
        rows.append(["groups finished / seen", f"{int(prog['finished'].sum())}/{len(prog)}"])
    if has_columns(res.trials, ["status"]):
        counts = res.trials["status"].value_counts()
        rows.append(["trials by status", ", ".join(f"{k}: {v}" for k, v in counts.items())])
    for col, what in (("code_version", "code version(s)"), ("data_source", "data source(s)")):
        values = sorted({str(v) for f in frames if col in f.columns for v in f[col].dropna().unique()})
        if values:
            rows.append([what, "; ".join(values)])
    s.blocks.append(Table("What this report was made from", ["item", "value"], rows))
    if res.runs:
        s.blocks.append(_runs_table(res.runs))
    return s


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    """The ``adgan sweep`` invocations of ``runs.json``: command, machine, time and how each ended."""
    rows = []
    for r in runs:
        m, c = r.get("machine") or {}, r.get("cluster") or {}
        wall = r.get("wall_seconds")
        rows.append([
            str(r.get("started_at", "-")),
            "-" if wall is None else f"{wall / 60:.1f} min",
            str(r.get("status", "-")),
            str(r.get("command", "-")),
            str(r.get("budget", "-")),
            f"{m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs, {m.get('memory_gib', '?')} GiB; "
            f"torch {m.get('torch', '?')}, ray {m.get('ray', '?')}",
            f"{c.get('nodes', '?')} node(s), {numeric(c.get('cpus'), 0)} CPUs, "
            f"{numeric(c.get('gpus'), 0)} GPUs",
            str(r.get("code_version", "-")),
        ])
    return Table("How these results were produced (runs.json: one row per `adgan sweep` invocation)",
                 ["started (UTC)", "wall", "status", "command", "budget", "machine", "Ray cluster",
                  "code version"], rows)


def progress(ctx: Context) -> Section:
    s = Section("progress", "Progress", paragraphs=[
        "Groups seen so far, with the best validation AUPRC reported so far. Validation AUPRC is only "
        "comparable within a group: its chance level is the class's anomaly share."])
    prog = analysis.progress(ctx.res)
    if prog is None:
        s.notes.append("No epochs or trials recorded yet.")
        return s
    headers = ["dataset", "class", "model", "loss case", "seed", "trials", "ended", "epochs",
               "best val AUPRC so far", "finished"]
    rows = [[r.dataset, ctx.label(r.dataset, r.anomaly_class), r.model, r.loss_case, str(r.seed),
             numeric(r.trials, 0), numeric(r.trials_ended, 0), numeric(r.epochs, 0),
             metric4(r.best_val_so_far),
             "yes" if r.finished else "no"] for r in prog.itertuples(index=False)]
    s.blocks.append(Table("Groups (model, dataset, class, loss case, seed)", headers, rows))
    return s


def _metric_table(ctx: Context, ds: str, metric: str, caption: str) -> Table:
    rows_ds = ctx.chosen[ctx.chosen["dataset"] == ds]
    models = model_order(rows_ds["model"], ctx.families)
    multi = {m for m in models if ctx.classes[(ctx.classes["dataset"] == ds)
                                               & (ctx.classes["model"] == m)]["loss_case"].nunique() > 1}
    rows = []
    for cls in sorted(rows_ds["anomaly_class"].unique()):
        row = [ctx.label(ds, cls)]
        for m in models:
            hit = rows_ds[(rows_ds["model"] == m) & (rows_ds["anomaly_class"] == cls)]
            if hit.empty or metric not in hit.columns:
                row.append("-")
                continue
            r = hit.iloc[0]
            cell = metric4(r[metric])
            std = r.get(f"{metric}_std", np.nan)
            if not pd.isna(std):
                cell += f" ± {std:.4f}"
            row.append(cell + (f" [{r['loss_case']}]" if m in multi else ""))
        rows.append(row)
    means = ["mean"] + [metric4(rows_ds[rows_ds["model"] == m][metric].mean()) if metric in rows_ds.columns
                        else "-" for m in models]
    return Table(caption, ["class", *models], [*rows, means])


def _chance(rows: pd.DataFrame) -> dict[int, float]:
    """Per class, the test split's anomaly share (AUPRC's chance level): ``test_q``, the flagged share,
    which sweeps set to the anomaly share. Empty where the column is missing."""
    if "test_q" not in rows.columns:
        return {}
    shares = rows.groupby("anomaly_class")["test_q"].mean()
    return {int(c): float(v) for c, v in shares.items() if pd.notna(v)}


def per_class(ctx: Context) -> Section:
    s = Section("per-class", "Test AUPRC per class and model (settings chosen on validation)", paragraphs=[
        "The survey's Figure 5 for this sweep: per anomalous class, each model's test AUPRC at the "
        "configuration chosen on validation ([loss case] where a model ran several). The dashed line is "
        "AUPRC's chance level, the test split's anomaly share."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    for ds in sorted(ctx.chosen["dataset"].unique()):
        rows = ctx.chosen[ctx.chosen["dataset"] == ds]
        order = {m: i for i, m in enumerate(model_order(rows["model"], ctx.families))}
        rows = rows.sort_values("model", key=lambda s: s.map(order), kind="stable")
        png = figures.grouped_bars(rows, series="model", value="test_auprc", err="test_auprc_std",
                              labels=ctx.labels_of(ds, rows["anomaly_class"].unique()),
                              title=f"{ds}: test AUPRC per class, at the settings chosen on validation",
                              ylabel="test AUPRC",
                              chance=_chance(rows))
        s.blocks.append(Figure(f"best-auprc-{ds}", f"{ds}: test AUPRC per class and model", png))
        s.blocks.append(_metric_table(ctx, ds, "test_auprc", f"{ds}: test AUPRC"))
        if "test_auroc" in rows.columns and rows["test_auroc"].notna().any():
            s.blocks.append(_metric_table(ctx, ds, "test_auroc", f"{ds}: test AUROC"))
    return s


def loss_cases(ctx: Context) -> Section:
    s = Section("loss-cases", "Loss cases", paragraphs=[
        "One chart per model that ran several loss cases: test AUPRC per class for each loss case; "
        "cells give test (validation) AUPRC, * marks the loss case chosen on validation."])
    if ctx.classes is None:
        return missing_note(s, ctx)
    shown = 0
    for (ds, model), rows in ctx.classes.groupby(["dataset", "model"], sort=True):
        cases = list(dict.fromkeys(rows["loss_case"]))
        if len(cases) < 2:
            continue
        shown += 1
        labels = ctx.labels_of(ds, rows["anomaly_class"].unique())
        png = figures.grouped_bars(rows, series="loss_case", value="test_auprc", err="test_auprc_std",
                              labels=labels, title=f"{ds} / {model}: test AUPRC per loss case",
                              ylabel="test AUPRC", chance=_chance(rows))
        s.blocks.append(Figure(f"loss-cases-{ds}-{model}", f"{ds} / {model}: test AUPRC per loss case", png))
        chosen = ctx.chosen[(ctx.chosen["dataset"] == ds) & (ctx.chosen["model"] == model)]
        pick = dict(zip(chosen["anomaly_class"], chosen["loss_case"], strict=False))
        table = []
        for cls in sorted(rows["anomaly_class"].unique()):
            line = [labels[int(cls)]]
            for case in cases:
                hit = rows[(rows["anomaly_class"] == cls) & (rows["loss_case"] == case)]
                if hit.empty:
                    line.append("-")
                    continue
                r = hit.iloc[0]
                line.append(f"{metric4(r['test_auprc'])} (val {metric4(r.get('val_auprc', np.nan))})"
                            + (" *" if pick.get(cls) == case else ""))
            table.append(line)
        s.blocks.append(Table(f"{ds} / {model}: test (validation) AUPRC per loss case", ["class", *cases],
                              table))
    if not shown:
        s.notes.append("No model ran more than one loss case in this sweep.")
    return s


def gan_vs_baseline(ctx: Context) -> Section:
    s = Section("gan-vs-baseline", "Best GAN against best baseline, per class", paragraphs=[
        "Is the GAN worth it? Per class, the best GAN and the best classical baseline, both chosen on "
        "validation AUPRC, with their test AUPRC; a positive difference means the GAN scored higher on "
        "test. Which one is recommended is decided on validation (last column), not by this difference."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    notes: list[str] = []
    merged = analysis.gan_vs_baseline(ctx.chosen, notes)
    s.notes += notes
    if merged is None:
        return s
    for ds, rows in merged.groupby("dataset", sort=True):
        table = []
        recommended = {(r.chosen.dataset, r.chosen.anomaly_class): r.chosen.family for r in ctx.recs}
        for r in rows.sort_values("anomaly_class").itertuples(index=False):
            gan = _detector(r.model_gan, r.loss_case_gan)
            table.append([ctx.label(ds, r.anomaly_class), gan, metric4(r.test_auprc_gan), r.model_base,
                          metric4(r.test_auprc_base), signed4(r.diff),
                          recommended.get((ds, int(r.anomaly_class)), "-")])
        higher = int((rows["diff"] > 0).sum())
        picked = sum(recommended.get((ds, int(c))) == "gan" for c in rows["anomaly_class"])
        table.append(["mean", "", metric4(rows["test_auprc_gan"].mean()), "",
                      metric4(rows["test_auprc_base"].mean()),
                      signed4(rows["diff"].mean()),
                      f"GAN recommended for {picked}/{len(rows)} (GAN higher on test: {higher})"])
        s.blocks.append(Table(f"{ds}: best GAN vs best baseline (test AUPRC; both chosen on validation)",
                              ["class", "best GAN", "test AUPRC", "best baseline", "test AUPRC",
                               "GAN - baseline (test)", "recommended family (validation)"], table))
    return s


def quality_vs_cost(ctx: Context) -> Section:
    s = Section("quality-cost", "Quality against cost", paragraphs=[
        "Mean test AUPRC over classes against the time the chosen trial spent fitting and scoring "
        "(training epochs plus validation scoring, as recorded per trial)."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    notes: list[str] = []
    qc = analysis.quality_vs_cost(ctx.chosen, notes)
    s.notes += notes
    if qc is None:
        return s
    for ds, rows in qc.groupby("dataset", sort=True):
        rows = rows.sort_values("test_auprc", ascending=False)
        # Each model in the colour of its bars in the per-class chart (same order, same palette).
        order = model_order(ctx.chosen.loc[ctx.chosen["dataset"] == ds, "model"], ctx.families)
        colours = {m: figures.PALETTE[i % len(figures.PALETTE)] for i, m in enumerate(order)}
        s.blocks.append(Figure(f"quality-cost-{ds}", f"{ds}: test AUPRC against fit+score seconds",
                               figures.cost_scatter(rows, title=f"{ds}: quality vs cost", colours=colours)))
        table = [[r.model, r.family, str(r.classes), metric4(r.test_auprc),
                  metric4(getattr(r, "test_auroc", np.nan)),
                  numeric(r.fit_seconds, 1), numeric(r.score_seconds, 1), numeric(r.cost_seconds, 1)]
                 for r in rows.itertuples(index=False)]
        s.blocks.append(Table(f"{ds}: quality vs cost (means over classes)",
                              ["model", "family", "classes", "test AUPRC", "test AUROC", "fit s", "score s",
                               "fit+score s"], table))
    return s


def thresholds(ctx: Context) -> Section:
    s = Section("thresholds", "Precision, recall and F1", paragraphs=[
        "Per dataset, model and class, at the configuration chosen on validation: precision, recall and F1 "
        "on test when the top share of the test samples is flagged (\"flagged\": the test split's anomaly "
        "share; 20% on KDD99, as Zenati et al. report it). Its threshold is a quantile of the test scores "
        "themselves: a figure to compare models and papers, not a cutoff one could ship.",
        "For shipping: the score cutoffs the exported checkpoint of each recommended detector (one seed's "
        "run) chose on its validation split (`adgan score --flag NAME` applies them; MODEL_CARD.md of "
        "`adgan export`), measured on test, which took no part in choosing them."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    rows = analysis.prf_rows(ctx.chosen, s.notes)
    if rows is not None:
        for ds, part in rows.groupby("dataset", sort=True):
            part = part.sort_values(["anomaly_class", "test_f1"], ascending=[True, False])
            table = [[r["model"], r["loss_case"], ctx.label(ds, int(r["anomaly_class"])),
                      metric4(r["test_precision"]), metric4(r["test_recall"]), metric4(r["test_f1"]),
                      _threshold(r),
                      "-" if pd.isna(r.get("test_q", np.nan)) else f"{r['test_q']:.0%}",
                      metric4(r["test_auprc"]), metric4(r.get("test_auroc", np.nan)),
                      numeric(r.get("n_seeds", np.nan), 0)] for _, r in part.iterrows()]
            # (KDD99's title as before: the published comparison's readers look for it)
            title = "KDD99 test metrics per model" if ds == "kdd99" else f"{ds}: test precision, recall, F1"
            s.blocks.append(Table(title, ["model", "loss case", "class", "precision", "recall", "F1",
                                          "threshold", "flagged", "AUPRC", "AUROC", "seeds"], table))
    cutoffs = _cutoff_rows(ctx)
    if cutoffs:
        s.blocks.append(Table("Recommended detector per class at the cutoffs chosen on validation (test)", [
            "dataset", "class", "detector", "--flag", "precision", "recall", "F1", "false alarms"], cutoffs))
    elif ctx.recs:
        s.notes.append("No recommended detector records cutoffs chosen on validation (trained by an adgan "
                       "before them).")
    return s


def _threshold(row: Any) -> str:
    """The test threshold of a (dataset, model, class) row: one value, or each seed's range (the seeds'
    settings score on other scales: their mean would be no one's threshold)."""
    lo, hi = row.get("test_threshold_min", np.nan), row.get("test_threshold_max", np.nan)
    if pd.notna(lo) and pd.notna(hi) and lo != hi:
        return f"{lo:.4g} to {hi:.4g} (per seed)"
    return numeric(row.get("test_threshold", np.nan), 4)


def _cutoff_rows(ctx: Context) -> list[list[str]]:
    """Per class, the recommended detector's test figures at each cutoff it chose on validation (its
    representative run's ``test_at_cutoffs``)."""
    rows = []
    for rec in ctx.recs:
        c = rec.chosen
        figures = test_at_cutoffs(c.representative)
        label = ctx.label(c.dataset, int(c.anomaly_class))
        for name in cutoff_order(figures):
            f = figures[name]
            rows.append([c.dataset, label, _detector(c.model, c.loss_case), name, metric4(f.get("precision")),
                         metric4(f.get("recall")), metric4(f.get("f1")),
                         "-" if f.get("false_alarm_rate") is None else f"{f['false_alarm_rate']:.1%}"])
    return rows
