"""A trial in flight when the driver dies continues from its last reported epoch after ``--resume``.

The trials hold after reporting epoch ``HOLD`` (the test hook ``ADGAN_TEST_HOLD``, see tests/sweep_hold.py)
until the driver is killed, so the kill lands while both are provably in flight, with the checkpoint of
that epoch in Tune's record, however slow the machine is (an earlier version raced the sweep and lost on a
loaded machine: the sweep finished before the kill condition was seen).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sweep_hold import held_and_recorded, hold_env, two_trial_spec
from test_sweep import ROOT, _env, _sweep_cmd, kill_driver_when  # the smoke sweep test's helpers

from adgan.sweep.results import read_table

pytestmark = pytest.mark.slow
EPOCHS = 8
HOLD = 3  # the trials hold after reporting this epoch until the driver is killed


def _spec(tmp: Path) -> Path:
    return two_trial_spec(tmp / "resume.yaml", "resume", EPOCHS)


def test_a_trial_in_flight_continues_from_its_checkpoint(tmp_path: Path) -> None:
    spec, results, env = _spec(tmp_path), tmp_path / "results", _env(tmp_path)
    env["ADGAN_HOME"] = str(tmp_path / "home")
    # Without W&B: this test is about Tune's checkpoints and the Parquet rows.
    cmd = [c if c != str(ROOT / "sweeps" / "smoke.yaml") else str(spec) for c in _sweep_cmd(results)]
    cmd += ["--no-wandb", "--progress-every", "1"]
    held = held_and_recorded(tmp_path / "hold", results / "resume" / "tune", HOLD, 2)

    killed = kill_driver_when(cmd, env | hold_env(HOLD, tmp_path / "hold"), tmp_path / "run1.log",
                              lambda: True if held() else None, 600)
    assert killed, (tmp_path / "run1.log").read_text()[-3000:]
    run2 = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-5000:]

    out = results / "resume"
    trials, epochs = read_table(out, "trials"), read_table(out, "epochs")
    assert len(trials) == 2 and all(t["status"] == "completed" and t["epochs_run"] == EPOCHS for t in trials)
    for t in trials:
        mine = sorted(e["epoch"] for e in epochs if e["trial_id"] == t["trial_id"])
        assert mine == list(range(1, EPOCHS + 1)), t  # every epoch once, none lost, none twice
        assert t["best_val_auprc"] == max(e["val_auprc"] for e in epochs if e["trial_id"] == t["trial_id"])
        # Tune's own record: results of two worker processes (before and after the kill); the second
        # attempt starts right after the held epoch, from the checkpoint of that epoch.
        reported = [json.loads(line) for line in
                    (out / "tune" / t["trial_id"] / "result.json").read_text().splitlines() if line.strip()]
        steps = [(r["pid"], r["epoch"]) for r in reported if r.get("epoch") is not None]
        firsts = [e for i, (pid, e) in enumerate(steps) if i and pid != steps[i - 1][0]]
        assert firsts == [HOLD + 1], steps
        log = [json.loads(line) for line in
               (out / "tune" / t["trial_id"] / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in log if r["kind"] == "epoch"] == list(range(1, EPOCHS + 1))
    # The resumed attempts continued from the training state in the held epoch's checkpoint (above). Once the
    # trials ended, the chosen one's checkpoint keeps the detector and its outcome, and no training state
    # (no trial will continue); the other trial's keeps only its outcome (adgan.sweep.callback).
    (best,) = read_table(out, "best")
    for t in trials:
        files = sorted(p.name for p in Path(t["checkpoint"]).iterdir())
        if t["trial_id"] == best["trial_id"]:
            assert {"detector.json", "state.pt", "finished.json"} <= set(files)
            assert "train_state.pt" not in files
        else:
            assert files == ["finished.json"], files
