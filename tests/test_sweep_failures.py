"""A trial that errors is recorded as ``errored`` and the sweep goes on to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adgan.sweep.results import read_table

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# kNN keeps only 8 training rows, so every trial that draws k > 8 fails inside fit with a DataError.
SPEC = """
name: failing
dataset:
  name: synthetic-tabular
  options: {max_train: 64}
classes: [0]
seeds: [0]
models:
  knn:
    fixed: {fit_samples: 8}
    search:
      k: {type: int, low: 1, high: 40}
budget: {trials_per_group: 6, max_epochs: 1, grace_period: 1, reduction_factor: 2}
resources: {cpus: 1, gpu: 0}
results: results
wandb: {project: adgan-failing}
"""


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update({"RAY_AUTH_TOKEN_PATH": str(tmp / "ray_token"), "PYTHONPATH": str(ROOT)})
    return env


def test_errored_trials_do_not_stop_the_sweep(tmp_path: Path) -> None:
    spec = tmp_path / "failing.yaml"
    spec.write_text(SPEC)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "adgan.cli", "sweep", str(spec), "--results", str(results), "--cpus", "2",
           "--no-wandb"]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    trials = read_table(results / "failing", "trials")
    assert len(trials) == 6
    k = {t["trial_id"]: json.loads(t["config"])["k"] for t in trials}
    errored = {t["trial_id"] for t in trials if t["status"] == "errored"}
    assert errored and len(errored) < len(trials), [(t["status"], k[t["trial_id"]]) for t in trials]
    assert errored == {tid for tid, kk in k.items() if kk > 8}  # exactly the impossible configurations
    msgs = [t["message"] for t in trials if t["status"] == "errored"]
    assert all("DataError" in m and "k" in m for m in msgs), msgs
    best = read_table(results / "failing", "best")
    assert len(best) == 1 and best[0]["test_auprc"] is not None
    assert k[best[0]["trial_id"]] <= 8
    # Why they errored is said at the end of the sweep (and by adgan best), not only in the table.
    said = run.stdout.split(f"{len(errored)} trial(s) errored (1 reason(s); ", 1)
    assert len(said) == 2, run.stdout[-3000:]
    reason = said[1].splitlines()[1]
    assert reason.startswith(f"  {len(errored)} x ") and "DataError" in reason and "(e.g. group " in reason
