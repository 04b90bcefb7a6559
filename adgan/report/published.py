"""Published figures (``published.json``, package data) and their side-by-side comparison with ours.

A comparison row says what differs between the paper's protocol and ours (data source, loss case, metric
variant, flagged share, feature scaling) and states the training budget on both sides. A row is labelled a
reproduction only when nothing differs and our epoch budget is at least the paper's; the paper's budget
is recorded only where known, so a budget-limited run is never presented as a reproduction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from adgan.errors import ConfigError

FIGURE_KEYS = ("dataset", "anomaly_class", "model", "paper_model", "metric", "value", "std", "source",
               "verified", "protocol", "paper_epochs", "notes")
METRICS = ("auprc", "auprc_trapz", "auroc", "precision", "recall", "f1")


@dataclass(frozen=True)
class PublishedFigure:
    """One published number and where it comes from (see ``published.json``)."""

    dataset: str
    anomaly_class: int
    model: str | None  # this project's detector name; None: no counterpart here
    paper_model: str
    metric: str
    value: float
    std: float | None
    source: str
    verified: bool
    protocol: str
    paper_epochs: int | None
    notes: str
    loss_case: str | None = None  # our name of the paper's loss case, where the source states it


@dataclass(frozen=True)
class Published:
    protocols: dict[str, dict[str, Any]]
    figures: tuple[PublishedFigure, ...]

    def select(self, dataset: str, metric: str | None = None) -> list[PublishedFigure]:
        return [f for f in self.figures if f.dataset == dataset and (metric is None or f.metric == metric)]


def load_published(path: str | Path | None = None) -> Published:
    """Read and validate the published figures (default: the package's ``published.json``).

    Raises:
        ConfigError: The file is not valid JSON or a figure lacks a field or has a bad value (the message
            names the file, the figure's index and the field).
    """
    if path is None:
        res = resources.files("adgan.report").joinpath("published.json")
        where, text = "adgan/report/published.json", res.read_text(encoding="utf-8")
    else:
        where, text = str(path), Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    protocols = raw.get("protocols") if isinstance(raw, dict) else None
    figures = raw.get("figures") if isinstance(raw, dict) else None
    if not isinstance(protocols, dict) or not isinstance(figures, list):
        raise ConfigError(f"{where}: expected an object with 'protocols' (object) and 'figures' (list)")
    out = []
    for i, fig in enumerate(figures):
        key = f"{where}: figures[{i}]"
        if not isinstance(fig, dict):
            raise ConfigError(f"{key}: expected an object")
        missing = [k for k in FIGURE_KEYS if k not in fig]
        if missing:
            raise ConfigError(f"{key}: missing field(s) {', '.join(missing)}")
        if fig["protocol"] not in protocols:
            raise ConfigError(f"{key}.protocol: unknown protocol {fig['protocol']!r}; expected one of: "
                              f"{', '.join(sorted(protocols))}")
        if fig["metric"] not in METRICS:
            raise ConfigError(f"{key}.metric: {fig['metric']!r}; expected one of: {', '.join(METRICS)}")
        value = fig["value"]
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key}.value: expected a number in [0, 1], got {value!r}")
        if not isinstance(fig["verified"], bool) or not str(fig["source"]).strip():
            raise ConfigError(f"{key}: expected a non-empty 'source' and a true/false 'verified'")
        case = fig.get("loss_case")
        if case is not None and not (isinstance(case, str) and case.strip()):
            raise ConfigError(f"{key}.loss_case: expected a loss case name or null, got {case!r}")
        out.append(PublishedFigure(**{k: fig[k] for k in FIGURE_KEYS}, loss_case=case))
    return Published(protocols=protocols, figures=tuple(out))


def match_dataset(published: str, ours: list[str]) -> str | None:
    """Our dataset for a published one: the same name, else a built-in variant of it (``mnist`` ->
    ``mnist-5k``). A dataset of one's own is never one of them, whatever its name (``kdd99-sample``, an
    image folder ``cifar10-x`` whose classes are not CIFAR-10's): a declared name cannot be a built-in's."""
    from adgan.data import list_datasets

    if published in ours:
        return published
    builtin = set(list_datasets())
    variants = sorted(d for d in ours if d.startswith(published + "-") and d in builtin)
    return variants[0] if variants else None


def budget_text(budget: dict[tuple[str, str], tuple[float, float]], dataset: str, model: str) -> str:
    epochs, trials = budget.get((dataset, model), (math.nan, math.nan))
    if not math.isfinite(epochs):
        return "unknown"
    return f"<= {epochs:.0f} epochs x {trials:.0f} trials/group"


def differences(
    fig: PublishedFigure, protocol: dict[str, Any], ours: pd.Series, dataset: str, metric_col: str,
    scaled: bool | None, max_train: int | None = None, inner_norm: bool | None = False,
) -> list[str]:
    """What differs between the paper's protocol and our chosen row (empty when nothing known does).
    ``inner_norm``: our model standardised the features inside its networks (``tabular_norm``); None:
    the results do not say (a GAN's row of an adgan that recorded only the keys its spec set)."""
    diffs = []
    if dataset != fig.dataset:
        diffs.append(f"data: {dataset} instead of the full {fig.dataset}")
    if max_train is not None:
        diffs.append(f"training normals subsampled to at most {max_train}")
    case = ours.get("loss_case")
    if isinstance(case, str) and case and case != "default":
        if fig.loss_case is None:
            diffs.append(f"loss case {case} (the source does not say the paper's)")
        elif case != fig.loss_case:
            diffs.append(f"loss case {case} (paper: {fig.loss_case})")
    if fig.metric == "auprc_trapz" and metric_col != "test_auprc_trapz":
        diffs.append("metric: average precision (paper: trapezoid AUPRC)")
    share = protocol.get("flagged_share")
    q = ours.get("test_q")
    if share is not None and q is not None and not pd.isna(q) and abs(float(q) - share) > 1e-6:
        diffs.append(f"flagged share {float(q):.0%} (paper: {share:.0%})")
    n_test, n_anom, n_val_anom = (ours.get(k) for k in ("n_test", "n_test_anomalies", "n_val_anomalies"))
    if protocol.get("all_anomalies_in_test") and _known(n_val_anom) and float(n_val_anom) > 0 \
            and _known(n_test) and _known(n_anom) and float(n_test) > 0:
        diffs.append(f"test anomaly share {float(n_anom) / float(n_test):.1%}, lower than the paper's: a "
                     "part of the anomalies validates here (paper: all in test); AUPRC moves with it")
    want_scaled = protocol.get("scaled")
    if want_scaled is not None and scaled is not None and scaled != want_scaled:
        diffs.append("features min-max scaled (paper: unscaled)" if scaled else "features unscaled "
                     "(paper: scaled)")
    if inner_norm:
        diffs.append("features standardised inside the networks (tabular_norm; the published code does not)")
    elif inner_norm is None and ours.get("family") == "gan":
        diffs.append("the results do not record tabular_norm (EGBAD's and AnoGAN's standardisation of the "
                     "features inside the networks, on by default; the published code has none)")
    return diffs


def _known(value: Any) -> bool:
    return value is not None and not pd.isna(value)


def verdict(fig: PublishedFigure, diffs: list[str], our_epochs: float) -> str:
    """``reproduction`` only when nothing differs and our budget reaches the paper's; else why not."""
    reasons = list(diffs)
    if fig.paper_epochs is None:
        reasons.append("paper's training budget not recorded here")
    elif not math.isfinite(our_epochs) or our_epochs < fig.paper_epochs:
        ours = f"{our_epochs:.0f}" if math.isfinite(our_epochs) else "unknown"
        reasons.append(f"budget below the paper's ({ours} < {fig.paper_epochs} epochs)")
    if reasons:
        return "comparison only, not a reproduction: " + "; ".join(reasons)
    return "reproduction (same protocol and budget)"


def compare(
    published: Published,
    chosen: pd.DataFrame,
    *,
    dataset: str,
    metric: str,
    budget: dict[tuple[str, str], tuple[float, float]],
    scaled: dict[str, bool | None],
    max_train: dict[tuple[str, str], int | None] | None = None,
    by_case: pd.DataFrame | None = None,
    inner_norm: dict[tuple[str, str, str], bool | None] | None = None,
) -> pd.DataFrame:
    """Rows of published figures for ``dataset``/``metric`` beside our chosen rows.

    Args:
        chosen: Per (dataset, model, class) rows chosen on validation (``analysis.chosen_per_model``).
        by_case: Per (dataset, model, loss case, class) rows (``analysis.per_class``): where the paper's
            loss case is known and we ran it, its row is compared rather than the loss case chosen.
        inner_norm: (our dataset, model, loss case) -> whether the chosen trials standardised features
            inside the networks (``sections_published.inner_norms``); absent: they did not.
        budget: (dataset, model) -> (max epochs, trials per group) of our sweep.
        scaled: our dataset -> whether its features were min-max scaled (None: unknown).
        max_train: (our dataset, model) -> the largest ``max_train`` subsample of the training normals
            that model's trials used (None: the full training split).

    Returns:
        Columns: anomaly_class, paper_model, published, std, verified, source, notes, dataset, model,
        loss_case, ours, n_seeds, diff, budget, verdict (ours/diff NaN where we have no result).
    """
    rows = []
    ours_datasets = sorted(chosen["dataset"].unique()) if len(chosen) else []
    ds = match_dataset(dataset, ours_datasets)
    for fig in published.select(dataset, metric):
        protocol = published.protocols[fig.protocol]
        match = pd.DataFrame()
        if ds is not None and fig.model is not None:
            match = chosen[(chosen["dataset"] == ds) & (chosen["model"] == fig.model)
                           & (chosen["anomaly_class"] == fig.anomaly_class)]
            if fig.loss_case is not None and by_case is not None:  # the paper's own loss case, if run
                same = by_case[(by_case["dataset"] == ds) & (by_case["model"] == fig.model)
                               & (by_case["anomaly_class"] == fig.anomaly_class)
                               & (by_case["loss_case"] == fig.loss_case)]
                match = same if not same.empty else match
        row: dict[str, Any] = {
            "anomaly_class": fig.anomaly_class, "paper_model": fig.paper_model, "published": fig.value,
            "std": fig.std, "verified": fig.verified, "source": fig.source, "notes": fig.notes,
            "model": fig.model or "", "dataset": ds or "", "loss_case": "", "ours": math.nan,
            "n_seeds": math.nan, "diff": math.nan, "budget": "", "verdict": "no result of ours",
        }
        if fig.model is None:
            row["verdict"] = "no counterpart in this project"
        elif not match.empty:
            ours = match.iloc[0]
            col = f"test_{metric}"
            if metric == "auprc_trapz" and (col not in ours.index or pd.isna(ours[col])):
                col = "test_auprc"
            value = float(ours[col]) if col in ours.index and not pd.isna(ours[col]) else math.nan
            epochs = budget.get((ds, fig.model), (math.nan, math.nan))[0]
            diffs = differences(fig, protocol, ours, ds, col, scaled.get(ds),
                                (max_train or {}).get((ds, fig.model)),
                                (inner_norm or {}).get((ds, fig.model, ours["loss_case"]), False))
            row.update({
                "loss_case": ours["loss_case"], "ours": value, "n_seeds": ours.get("n_seeds", math.nan),
                "diff": value - fig.value, "budget": budget_text(budget, ds, fig.model),
                "verdict": verdict(fig, diffs, epochs),
            })
        rows.append(row)
    return pd.DataFrame(rows)
