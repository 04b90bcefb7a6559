"""Ctrl-C (SIGINT) and SIGTERM to a sweep's driver: the real two-trial sweep of tests/test_sweep_faults.py,
interrupted while its trials hold after epoch 1, ends as "interrupted" and ``--resume`` finishes it; and the
runner's ``_fit`` tells an interrupted run from a finished one, with Tune's own SIGINT handler in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sweep_hold import held_and_recorded, wait_for
from test_sweep import ROOT
from test_sweep_faults import EPOCHS, HeldSweep

from adgan.sweep.grouped import open_studies
from adgan.sweep.provenance import read_runs
from adgan.sweep.results import read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The two-trial sweep given Ctrl-C (SIGINT to the driver) while both trials hold after epoch 1, then
    resumed with the trials released. The first run keeps its Optuna journal elsewhere (--optuna-storage);
    the resume, as a user types it, does not repeat that."""
    tmp = tmp_path_factory.mktemp("ctrl-c")
    sweep = HeldSweep(tmp, "ctrlc", first_only=["--optuna-storage", str(tmp / "my.journal")])
    try:
        wait_for(sweep.first, held_and_recorded(sweep.hold, sweep.out / "tune", 1, 2), sweep.log, 600)
        sweep.first.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to the driver
        rc = sweep.first.wait(timeout=600)
        facts = {"rc": rc, "log": sweep.log.read_text(), "runs": read_runs(sweep.out)}
        facts["best"] = subprocess.run([sys.executable, "-m", "adgan.cli", "best", str(sweep.out)], cwd=ROOT,
                                       env=sweep.env, capture_output=True, text=True, timeout=600)
        # Another journal named for the resume: refused before Ray starts, not a crash mid-sweep.
        facts["wrong_journal"] = subprocess.run(
            [*sweep.cmd, "--resume", "--optuna-storage", str(tmp / "other.journal")], cwd=ROOT, env=sweep.env,
            capture_output=True, text=True, timeout=600)
        facts["resumed"] = sweep.resume_released()
    finally:
        sweep.stop()
    out = sweep.out
    facts["out"], facts["journal"] = out, tmp / "my.journal"
    return facts


def test_ctrl_c_stops_the_sweep_as_interrupted_and_resume_finishes_it(interrupted: dict) -> None:
    log = interrupted["log"]
    assert interrupted["rc"] == 130, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # Tune's own advice (Python's Tuner.restore) and its complaint about unread metrics are not shown.
    assert "Tuner.restore(" not in log and "Failed to fetch metrics" not in log, log[-3000:]
    assert "interrupted; Tune saved its state: continue with the same command and --resume: adgan " in log
    hint = log.split("--resume: ", 1)[1].splitlines()[0]  # the whole command, its --results included
    assert f"--results {interrupted['out'].parent}" in hint and hint.endswith(" --resume"), hint
    assert [r["status"] for r in interrupted["runs"]] == ["interrupted"]
    best = interrupted["best"]  # of the interrupted sweep: no answer yet, and why
    assert best.returncode == 0 and "no group has finished yet" in best.stdout, best.stderr[-2000:]
    assert "note: 1 of 1 groups of this sweep have no result yet" in best.stderr
    wrong = interrupted["wrong_journal"]
    assert wrong.returncode == 2
    assert "other.journal holds no study of 1 group(s) that ran trials" in wrong.stderr
    r = interrupted["resumed"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    # The resume continued the journal the sweep ran with (recorded in runs.json), not a new one.
    assert f"continuing the sweep's Optuna journal {interrupted['journal']}" in r.stderr
    assert not (interrupted["out"] / "optuna.journal").exists()
    (study,) = open_studies(interrupted["journal"]).values()
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE"]
    trials, epochs = read_table(interrupted["out"], "trials"), read_table(interrupted["out"], "epochs")
    assert len(trials) == 2 and all(t["status"] == "completed" and t["epochs_run"] == EPOCHS for t in trials)
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == 2 * EPOCHS
    assert [x["status"] for x in read_runs(interrupted["out"])] == ["interrupted", "finished"]
    # The group's answer is from the finished trials, not from the ones the Ctrl-C stopped after epoch 1.
    (best,) = read_table(interrupted["out"], "best")
    assert best["val_auprc"] == max(t["best_val_auprc"] for t in trials) and best["n_trials"] == 2


class _TuneLikeTuner:
    """``fit`` installs a SIGINT handler as Ray Tune 2.60 does (note the signal, put back the handler it
    found) and, when told to, receives ``signum`` while it runs."""

    def __init__(self, signum: int | None) -> None:
        self.signum, self.stopped = signum, False

    def fit(self) -> str:
        original = signal.getsignal(signal.SIGINT)

        def tune_handler(sig: int, frame: object) -> None:
            self.stopped = True
            signal.signal(signal.SIGINT, original)

        signal.signal(signal.SIGINT, tune_handler)
        if self.signum is not None:
            os.kill(os.getpid(), self.signum)
        return "grid"


@pytest.mark.parametrize(("signum", "interrupted"), [(None, False), (signal.SIGINT, True),
                                                     (signal.SIGTERM, True)])
def test_fit_tells_an_interrupted_run_and_sigterm_stops_as_ctrl_c(signum: int | None,
                                                                  interrupted: bool) -> None:
    """SIGTERM (a scheduler, `kubectl delete`) is turned into the SIGINT Tune handles gracefully, and the
    runner learns either way that the sweep did not end; handlers are as before afterwards."""
    from adgan.sweep.runner import _fit

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    tuner = _TuneLikeTuner(signum)
    assert _fit(tuner) == ("grid", interrupted)
    assert tuner.stopped is interrupted
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
