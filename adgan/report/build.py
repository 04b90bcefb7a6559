"""``build_report``: read a sweep's results, build every section and write ``report.html`` (figures
embedded) and ``report.md`` (figures as PNG files in ``figures/`` beside it), each file atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from adgan.atomic import write_atomic
from adgan.errors import DataError
from adgan.report import sections as sec
from adgan.report.doc import Section, render_html, render_markdown
from adgan.report.load import load_results
from adgan.report.published import load_published
from adgan.report.sections_published import published_section
from adgan.report.sections_runs import learning_curves, sweep_cost
from adgan.sweep.storage import location

FIG_DIR = "figures"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: tuple[Path, ...]
    sections: tuple[str, ...]


def build_sections(results_dir: str | os.PathLike[str]) -> tuple[str, list[Section]]:
    """Read ``results_dir`` and build the report's sections; returns (sweep name, sections).

    Raises:
        DataError: ``results_dir`` is not a directory or holds no result file.
    """
    res = load_results(results_dir)
    ctx = sec.make_context(res, load_published())
    # The answer first; the progress of every group (long for big sweeps) last.
    builders = (sec.recommendation, sec.overview, sec.per_class, sec.gan_vs_baseline, sec.loss_cases,
                sec.quality_vs_cost, sec.thresholds, published_section, learning_curves, sweep_cost,
                sec.progress)
    return res.name, [build(ctx) for build in builders]


def build_report(
    results_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> ReportFiles:
    """Write the report of the sweep in ``results_dir`` to ``out`` (default ``<results_dir>/report``; for
    results on an object store, ``./<sweep>-report`` here).

    Each file goes to a temporary sibling first and is renamed into place, so a reader (or a browser
    refreshing the page while a sweep runs) never sees half a file. PNGs in ``out/figures`` that are not
    part of this report (left from an earlier one) are removed.
    """
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise DataError(f"--out {out}: a file, not a folder; the report writes report.md, report.html and "
                        "figures/ into a folder")
    name, sections = build_sections(results_dir)
    loc = location(results_dir)
    # Results on an object store: the report is written here (a local directory), not into the store.
    default = Path(loc.path) / "report" if loc.is_local else Path.cwd() / f"{loc.name()}-report"
    out_dir = Path(out) if out is not None else default
    fig_dir = out_dir / FIG_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    title = f"adgan sweep report: {name}"
    intro = [f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {loc.uri}."]
    written = []
    for s in sections:
        for fig in s.figures():
            path = fig_dir / f"{fig.name}.png"
            write_atomic(path, fig.png)
            written.append(path)
    for stale in fig_dir.glob("*.png"):
        if stale not in written:
            stale.unlink()
    md = out_dir / "report.md"
    html = out_dir / "report.html"
    write_atomic(md, render_markdown(title, intro, sections, FIG_DIR))
    write_atomic(html, render_html(title, intro, sections))
    return ReportFiles(html=html, markdown=md, figures=tuple(written), sections=tuple(s.id for s in sections))
