"""The report's sections, each built from the analysis tables; a section whose inputs are missing says
so in a note instead of failing, so a sweep still running (or an older schema) still gets a report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from adgan.report import analysis as an
from adgan.report import figures as fg
from adgan.report.doc import Figure, Section, Table
from adgan.report.load import SweepResults, class_label, has_columns, model_family
from adgan.report.published import Published

SELECTION = ("Selection rule: within a group the configuration and epoch are chosen on validation AUPRC; "
             "a model's loss case per class, the best GAN and the best baseline of a class are also chosen "
             "on (mean) validation AUPRC. Test figures are read off the chosen rows, averaged over seeds "
             "(± is the standard deviation over seeds where there are several).")


def f4(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float | np.floating) and not math.isfinite(x)) else f"{x:.4f}"


def fsig(x: Any) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:+.4f}"


def fnum(x: Any, nd: int = 2) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.{nd}f}"


@dataclass
class Context:
    """Everything the section builders share."""

    res: SweepResults
    published: Published
    best: pd.DataFrame | None = None
    classes: pd.DataFrame | None = None  # per (dataset, model, loss case, class), mean over seeds
    chosen: pd.DataFrame | None = None  # per (dataset, model, class), loss case chosen on validation
    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def label(self, dataset: str, cls: int) -> str:
        return self.labels.get(dataset, {}).get(cls) or class_label(dataset, cls)

    def labels_of(self, dataset: str, classes: Iterable[int]) -> dict[int, str]:
        return {int(c): self.label(dataset, int(c)) for c in classes}


def make_context(res: SweepResults, published: Published) -> Context:
    ctx = Context(res=res, published=published)
    ctx.best = an.group_best(res, ctx.notes)
    for frame in (res.best, res.trials, res.epochs):
        if has_columns(frame, ["dataset", "anomaly_class", "class_name"]):
            names = frame[["dataset", "anomaly_class", "class_name"]].drop_duplicates()
            for ds, cls, name in names.itertuples(index=False):
                if isinstance(name, str) and name:
                    ctx.labels.setdefault(ds, {})[int(cls)] = f"{cls} ({name})" if name != str(cls) else name
    if ctx.best is not None:
        ctx.classes = an.per_class(ctx.best)
        ctx.chosen = an.chosen_per_model(ctx.classes, ctx.notes)
    return ctx


def model_order(models: Iterable[str]) -> list[str]:
    """GANs first, then baselines, then anything else; by name within each family."""
    rank = {"gan": 0, "baseline": 1}
    return sorted(set(models), key=lambda m: (rank.get(model_family(m), 2), m))


def missing_note(section: Section, ctx: Context) -> Section:
    section.notes += ctx.notes or ["No finished group yet: nothing to show here."]
    return section


def overview(ctx: Context) -> Section:
    res = ctx.res
    s = Section("overview", "Overview", paragraphs=[SELECTION])
    s.notes += res.notes + [n for n in ctx.notes if n not in res.notes]
    rows = [["results directory", str(res.path)], ["sweep", res.name]]
    for name in ("epochs", "trials", "best"):
        frame = res.table(name)
        version = res.schema_versions.get(name)
        rows.append([f"{name}.parquet", "missing or unreadable" if frame is None else
                     f"{len(frame)} rows" + (f" (schema version {version})" if version else "")])
    frames = [f for f in (res.best, res.trials, res.epochs) if f is not None]
    for col, what in (("dataset", "datasets"), ("model", "models")):
        values = sorted({v for f in frames if col in f.columns for v in f[col].unique()})
        if col == "model":
            values = [f"{m} ({model_family(m)})" for m in values]
        rows.append([what, ", ".join(values) or "-"])
    prog = an.progress(res)
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
            f"{c.get('nodes', '?')} node(s), {fnum(c.get('cpus'), 0)} CPUs, {fnum(c.get('gpus'), 0)} GPUs",
            str(r.get("code_version", "-")),
        ])
    return Table("How these results were produced (runs.json: one row per `adgan sweep` invocation)",
                 ["started (UTC)", "wall", "status", "command", "budget", "machine", "Ray cluster",
                  "code version"], rows)


def progress(ctx: Context) -> Section:
    s = Section("progress", "Progress", paragraphs=[
        "Groups seen so far, with the best validation AUPRC reported so far. Validation AUPRC is only "
        "comparable within a group: its chance level is the class's anomaly share."])
    prog = an.progress(ctx.res)
    if prog is None:
        s.notes.append("No epochs or trials recorded yet.")
        return s
    headers = ["dataset", "class", "model", "loss case", "seed", "trials", "ended", "epochs",
               "best val AUPRC so far", "finished"]
    rows = [[r.dataset, ctx.label(r.dataset, r.anomaly_class), r.model, r.loss_case, str(r.seed),
             fnum(r.trials, 0), fnum(r.trials_ended, 0), fnum(r.epochs, 0), f4(r.best_val_so_far),
             "yes" if r.finished else "no"] for r in prog.itertuples(index=False)]
    s.blocks.append(Table("Groups (model, dataset, class, loss case, seed)", headers, rows))
    return s


def _metric_table(ctx: Context, ds: str, metric: str, caption: str) -> Table:
    rows_ds = ctx.chosen[ctx.chosen["dataset"] == ds]
    models = model_order(rows_ds["model"])
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
            cell = f4(r[metric])
            std = r.get(f"{metric}_std", np.nan)
            if not pd.isna(std):
                cell += f" ± {std:.4f}"
            row.append(cell + (f" [{r['loss_case']}]" if m in multi else ""))
        rows.append(row)
    means = ["mean"] + [f4(rows_ds[rows_ds["model"] == m][metric].mean()) if metric in rows_ds.columns
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
    s = Section("per-class", "Best test AUPRC per class and model", paragraphs=[
        "The survey's Figure 5 for this sweep: per anomalous class, each model's test AUPRC at the "
        "configuration chosen on validation ([loss case] where a model ran several). The dashed line is "
        "AUPRC's chance level, the test split's anomaly share."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    for ds in sorted(ctx.chosen["dataset"].unique()):
        rows = ctx.chosen[ctx.chosen["dataset"] == ds]
        order = {m: i for i, m in enumerate(model_order(rows["model"]))}
        rows = rows.sort_values("model", key=lambda s: s.map(order), kind="stable")
        png = fg.grouped_bars(rows, series="model", value="test_auprc", err="test_auprc_std",
                              labels=ctx.labels_of(ds, rows["anomaly_class"].unique()),
                              title=f"{ds}: best test AUPRC per class", ylabel="test AUPRC",
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
        png = fg.grouped_bars(rows, series="loss_case", value="test_auprc", err="test_auprc_std",
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
                line.append(f"{f4(r['test_auprc'])} (val {f4(r.get('val_auprc', np.nan))})"
                            + (" *" if pick.get(cls) == case else ""))
            table.append(line)
        s.blocks.append(Table(f"{ds} / {model}: test (validation) AUPRC per loss case", ["class", *cases],
                              table))
    if not shown:
        s.notes.append("No model ran more than one loss case in this sweep.")
    return s


def gan_vs_baseline(ctx: Context) -> Section:
    s = Section("gan-vs-baseline", "Best GAN against best baseline, per class", paragraphs=[
        "Is the GAN worth it? Per class, the best GAN and the best classical baseline (each chosen on "
        "validation AUPRC) with their test AUPRC; a positive difference means the GAN wins."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    notes: list[str] = []
    merged = an.gan_vs_baseline(ctx.chosen, notes)
    s.notes += notes
    if merged is None:
        return s
    for ds, rows in merged.groupby("dataset", sort=True):
        table = []
        for r in rows.sort_values("anomaly_class").itertuples(index=False):
            gan = r.model_gan + ("" if r.loss_case_gan == "default" else f" [{r.loss_case_gan}]")
            table.append([ctx.label(ds, r.anomaly_class), gan, f4(r.test_auprc_gan), r.model_base,
                          f4(r.test_auprc_base), fsig(r.diff), "GAN" if r.diff > 0 else "baseline"])
        wins = int((rows["diff"] > 0).sum())
        table.append(["mean", "", f4(rows["test_auprc_gan"].mean()), "", f4(rows["test_auprc_base"].mean()),
                      fsig(rows["diff"].mean()), f"GAN wins {wins}/{len(rows)}"])
        s.blocks.append(Table(f"{ds}: best GAN vs best baseline (test AUPRC)",
                              ["class", "best GAN", "test AUPRC", "best baseline", "test AUPRC",
                               "GAN - baseline", "winner"], table))
    return s


def quality_vs_cost(ctx: Context) -> Section:
    s = Section("quality-cost", "Quality against cost", paragraphs=[
        "Mean test AUPRC over classes against the time the chosen trial spent fitting and scoring "
        "(training epochs plus validation scoring, as recorded per trial)."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    notes: list[str] = []
    qc = an.quality_vs_cost(ctx.chosen, notes)
    s.notes += notes
    if qc is None:
        return s
    for ds, rows in qc.groupby("dataset", sort=True):
        rows = rows.sort_values("test_auprc", ascending=False)
        s.blocks.append(Figure(f"quality-cost-{ds}", f"{ds}: test AUPRC against fit+score seconds",
                               fg.cost_scatter(rows, title=f"{ds}: quality vs cost")))
        table = [[r.model, r.family, str(r.classes), f4(r.test_auprc), f4(getattr(r, "test_auroc", np.nan)),
                  fnum(r.fit_seconds, 1), fnum(r.score_seconds, 1), fnum(r.cost_seconds, 1)]
                 for r in rows.itertuples(index=False)]
        s.blocks.append(Table(f"{ds}: quality vs cost (means over classes)",
                              ["model", "family", "classes", "test AUPRC", "test AUROC", "fit s", "score s",
                               "fit+score s"], table))
    return s


def kdd99(ctx: Context) -> Section:
    s = Section("kdd99", "KDD99: precision, recall and F1", paragraphs=[
        "Per model, at the configuration chosen on validation: precision, recall and F1 on test with the "
        "threshold used (the score above which a sample is flagged) and the share of test samples flagged."])
    if ctx.chosen is None:
        return missing_note(s, ctx)
    notes: list[str] = []
    kdd = an.kdd_rows(ctx.chosen, notes)
    s.notes += notes
    if kdd is None:
        if not notes:
            s.notes.append("This sweep has no KDD99 results.")
        return s
    table = [[r["model"], r["loss_case"], f4(r["test_precision"]), f4(r["test_recall"]),
              f4(r["test_f1"]), fnum(r.get("test_threshold", np.nan), 4),
              "-" if pd.isna(r.get("test_q", np.nan)) else f"{r['test_q']:.0%}", f4(r["test_auprc"]),
              f4(r.get("test_auroc", np.nan)), fnum(r.get("n_seeds", np.nan), 0), r["dataset"]]
             for _, r in kdd.sort_values("test_f1", ascending=False).iterrows()]
    s.blocks.append(Table("KDD99 test metrics per model", [
        "model", "loss case", "precision", "recall", "F1", "threshold", "flagged", "AUPRC", "AUROC", "seeds",
        "dataset"], table))
    return s
