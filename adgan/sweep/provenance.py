"""``runs.json``: what produced a sweep's results, one record per ``adgan sweep`` invocation.

Each record holds the command line, the budget, whether it resumed, the machine (CPU model, cores,
memory, GPUs), the Ray cluster it ran on, library versions, the code version, start and end times, the
wall time and how it ended (``running`` while it runs, then ``finished``, ``interrupted`` or ``failed``).
A resumed sweep appends a record, so the wall time of an interrupted-and-resumed sweep is the sum. The
file is rewritten atomically (``adgan.sweep.storage``), locally or on an object store.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from adgan.errors import DataError
from adgan.sweep.storage import Location, location
from adgan.version import dist_version

FILE = "runs.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict[str, Any]:
    """The driver's machine: OS, CPU model, cores, memory, Python and library versions."""
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        **{dist: dist_version(dist) for dist in ("torch", "ray", "optuna", "wandb")},
    }


def read_runs(results_dir: str | os.PathLike[str] | Location) -> list[dict[str, Any]]:
    """The records of ``results_dir/runs.json`` (a path or a URI; empty when absent or unreadable)."""
    loc = results_dir if isinstance(results_dir, Location) else location(results_dir)
    try:
        data = json.loads(loc.child(FILE).read_text())
    except (OSError, json.JSONDecodeError, DataError):
        return []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def _write(results_dir: str | os.PathLike[str] | Location, runs: list[dict[str, Any]]) -> None:
    loc = results_dir if isinstance(results_dir, Location) else location(results_dir)
    loc.child(FILE).write_text(json.dumps(runs, indent=2, default=str) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def start_run(results_dir: str | os.PathLike[str] | Location, **fields: Any) -> int:
    """Append a ``running`` record (command, machine, ``fields``); returns its index. Called with the
    results' lock held, so an earlier record still ``running`` is of a driver that was killed: it becomes
    ``killed``."""
    runs = read_runs(results_dir)
    for rec in runs:
        if rec.get("status") == "running":
            rec["status"] = "killed"
    runs.append(
        {
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "cwd": os.getcwd(),
            "started_at": _now(),
            "status": "running",
            **fields,
            "machine": machine(),
            "started_unix": round(time.time(), 3),
        }
    )
    _write(results_dir, runs)
    return len(runs) - 1


def end_run(results_dir: str | os.PathLike[str] | Location, index: int, status: str, **fields: Any) -> None:
    """Close record ``index`` with ``status``, the end time and the wall seconds."""
    runs = read_runs(results_dir)
    if not 0 <= index < len(runs):
        return
    rec = runs[index]
    rec.update({"status": status, "ended_at": _now(), **fields})
    t0 = rec.get("started_unix")
    if isinstance(t0, int | float):
        rec["wall_seconds"] = round(time.time() - t0, 1)
    _write(results_dir, runs)
