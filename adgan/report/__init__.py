"""``adgan report``: a self-contained HTML page (and Markdown twin) from a sweep's Parquet results.

Public API: :func:`build_report` (write the report), :func:`build_sections` (the report as data),
:func:`load_results` (tolerant reader of ``results/<sweep>/``), :func:`load_published` (the published
figures of ``published.json``) and :func:`register_commands` (adds the ``report`` subcommand).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# The public names are imported on first use: registering the ``report`` subcommand must not load
# pandas and matplotlib for every ``adgan`` command.
_LAZY = {
    "ReportFiles": "build", "build_report": "build", "build_sections": "build",
    "SweepResults": "load", "load_results": "load",
    "Published": "published", "PublishedFigure": "published", "load_published": "published",
}

__all__ = [
    "Published", "PublishedFigure", "ReportFiles", "SweepResults", "build_report", "build_sections",
    "load_published", "load_results", "register_commands",
]


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``adgan report RESULTS [--out DIR]`` to the CLI's subcommands."""
    p = subparsers.add_parser(
        "report",
        help="write an HTML + Markdown report of a sweep's results",
        description="Write report.html (self-contained: figures embedded, no network needed) and report.md "
        "(figures as PNG files beside it) from results/<sweep>/. Works on a sweep still running: it shows "
        "what is there so far.",
    )
    p.add_argument("results", help="results directory of a sweep (holding epochs/trials/best.parquet)")
    p.add_argument("--out", default=None,
                   help="output directory (default: <results>/report; for results on an object store, "
                   "./<sweep>-report)")
    p.set_defaults(func=cmd_report)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"adgan.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'adgan.report' has no attribute {name!r}")


def cmd_report(args: argparse.Namespace) -> int:
    """Handler of ``adgan report``; returns the exit code."""
    from adgan.report.build import build_report

    files = build_report(args.results, args.out)
    print(f"wrote {files.html} ({len(files.figures)} figures embedded) and {files.markdown}")
    return 0
