"""Report figures as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Figures are sized for a page about 1000 px wide and rendered at a modest DPI so the self-contained HTML
page (figures embedded as base64) stays a few MB even for a sweep of 10 classes x several models.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

DPI = 90
# Colour-blind-safe qualitative palette (Okabe-Ito), cycled.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # Fixed margins (set by each figure) instead of bbox_inches="tight", which draws everything twice.
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def grouped_bars(
    values: pd.DataFrame,
    *,
    series: str,
    value: str,
    err: str | None,
    labels: Mapping[int, str],
    title: str,
    ylabel: str,
    chance: Mapping[int, float] | None = None,
) -> bytes:
    """Bars of ``value`` per class (x) and per ``series`` (one colour each), optional error bars.

    Args:
        values: Rows with ``anomaly_class``, ``series``, ``value`` and optionally ``err`` columns.
        labels: Class index -> axis label.
        chance: Class index -> chance level of the metric (AUPRC: the anomaly share), drawn as a dashed
            line across the class's bars.
    """
    classes = sorted(values["anomaly_class"].unique())
    names = list(dict.fromkeys(values[series]))
    width = 0.8 / max(len(names), 1)
    width_in = min(5.5 + 0.9 * len(classes) * max(1, len(names) / 3), 14)
    fig = Figure(figsize=(width_in, 4.2))
    # The title wrapped to the axes' width (about 11 characters an inch at its size): a single class's
    # narrow figure cut a long title off on both sides.
    heading = textwrap.fill(title, width=max(24, int((width_in - 2.6) * 11)))
    # Room on the right for the legend (about 1.7 in), above for the title's lines and below for rotated
    # class names.
    fig.subplots_adjust(left=0.8 / width_in, right=1 - 1.8 / width_in, top=0.9 - 0.06 * heading.count("\n"),
                        bottom=0.24 if len(classes) > 5 else 0.13)
    ax = fig.add_subplot()
    pos = {c: i for i, c in enumerate(classes)}
    for k, name in enumerate(names):
        rows = values[values[series] == name]
        x = np.array([pos[c] for c in rows["anomaly_class"]], dtype=float) - 0.4 + width * (k + 0.5)
        # NaN (a single seed) draws no error bar.
        yerr = rows[err].to_numpy(dtype=float) if err and err in rows.columns else None
        ax.bar(x, rows[value].to_numpy(), width=width * 0.95, yerr=yerr, capsize=2,
               color=PALETTE[k % len(PALETTE)], label=str(name))
    drawn = False
    for c, level in (chance or {}).items():
        if c in pos and level is not None and math.isfinite(level):
            ax.hlines(level, pos[c] - 0.45, pos[c] + 0.45, colors="black", linestyles="--", linewidth=1,
                      label=None if drawn else "chance level")
            drawn = True
    ax.set_xticks(range(len(classes)), [labels.get(c, str(c)) for c in classes],
                  rotation=30 if len(classes) > 5 else 0, ha="right" if len(classes) > 5 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("anomalous class")
    ax.set_title(heading)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def learning_curves(
    epochs: pd.DataFrame,
    *,
    status: Mapping[str, str],
    best_trials: set[str],
    labels: Mapping[int, str],
    title: str,
) -> bytes:
    """Validation AUPRC per epoch, one panel per class: each group's best trial bold, other trials faint
    (dotted when ASHA stopped them, x where a trial diverged or errored).

    Args:
        epochs: Rows of one (dataset, model, loss case) with ``anomaly_class``, ``seed``, ``trial_id``,
            ``epoch``, ``val_auprc``.
        status: trial id -> status (``completed``, ``stopped early``, ``diverged``, ``errored``).
        best_trials: Trial ids drawn bold (one per group).
    """
    classes = sorted(epochs["anomaly_class"].unique())
    ncols = min(len(classes), 5)
    nrows = math.ceil(len(classes) / ncols)
    width = 3.0 * ncols + 0.6
    seeds = sorted(epochs["seed"].unique())
    legend = "bold: best trial of each group" + (" (one colour per seed)" if len(seeds) > 1 else "")
    # The heading wrapped to the figure's width (about 15 characters an inch at 9 points): a figure of one
    # class is narrow.
    heading = "\n".join(textwrap.fill(part, width=max(30, int(width * 15))) for part in (
        title, f"{legend}; faint: other trials, dotted: stopped early by ASHA, x: diverged/errored"))
    head_in = 0.2 + 0.17 * (heading.count("\n") + 1)
    height = 2.5 * nrows + 0.5 + head_in
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.6 / width, right=0.98, top=1 - (head_in + 0.1) / height, bottom=0.5 / height,
                        hspace=0.45, wspace=0.08)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for i, cls in enumerate(classes):
        ax = axes[i // ncols][i % ncols]
        rows = epochs[epochs["anomaly_class"] == cls]
        for trial, curve in rows.groupby("trial_id", sort=True):
            curve = curve.sort_values("epoch")
            st = status.get(str(trial), "")
            x, y = curve["epoch"].to_numpy(), curve["val_auprc"].to_numpy(dtype=float)
            if str(trial) in best_trials:
                colour = PALETTE[seeds.index(curve["seed"].iloc[0]) % len(PALETTE)]
                ax.plot(x, y, color=colour, lw=2.0, marker="o", ms=3, zorder=3)
                continue
            style = ":" if st == "stopped early" else "-"
            # A marker too, so a trial stopped after its first epoch still shows as a point.
            ax.plot(x, y, color="grey", lw=0.9, alpha=0.4, ls=style, marker=".", ms=3, zorder=1)
            if st in ("diverged", "errored") and len(x):
                ax.plot(x[-1:], y[-1:], "x", color="#D55E00", alpha=0.7, zorder=2)
        ax.set_title(labels.get(cls, str(cls)), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("val AUPRC")
        if i // ncols == nrows - 1:
            ax.set_xlabel("epoch")
    for j in range(len(classes), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle(heading, fontsize=9)
    return _png(fig)


def cost_scatter(rows: pd.DataFrame, *, title: str, colours: Mapping[str, str] | None = None) -> bytes:
    """Mean test AUPRC against mean fit+score seconds per model (log x), GANs as circles, baselines as
    squares; ``colours``: model -> colour (as in the report's bar charts), else the palette in row order."""
    fig = Figure(figsize=(6.0, 4.0))
    fig.subplots_adjust(left=0.13, right=0.96, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    for k, row in enumerate(rows.itertuples(index=False)):
        marker = "s" if row.family == "baseline" else "o"
        colour = (colours or {}).get(str(row.model), PALETTE[k % len(PALETTE)])
        ax.scatter([max(row.cost_seconds, 1e-3)], [row.test_auprc], marker=marker, s=60,
                   color=colour, label=str(row.model))
        ax.annotate(str(row.model), (max(row.cost_seconds, 1e-3), row.test_auprc), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.margins(x=0.3, y=0.15)  # room for the model names
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    # Minor ticks labelled only within one decade (else no major tick shows a number); over more, their
    # labels would run into each other.
    seconds = rows["cost_seconds"].clip(lower=1e-3)
    ax.xaxis.set_minor_formatter(plain if seconds.max() < 10 * seconds.min() else NullFormatter())
    ax.set_xlabel("mean fit + score seconds of the chosen trial (log)")
    ax.set_ylabel("mean test AUPRC over classes")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ValueError when ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
