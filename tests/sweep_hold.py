"""Helpers for sweep tests that act while trials are provably in flight: the trials' hold hook
(``ADGAN_TEST_HOLD``, see ``adgan.sweep.trial._hold_if_asked``) and Tune's record of where each trial is.

A test sets ``ADGAN_TEST_HOLD=<epoch>:<directory>`` in the sweep's environment; each trial, once its
report of that epoch has returned (the driver has the result), writes ``<directory>/<trial id>.held`` and
waits until ``<directory>/release`` exists. The test waits for those files (and for Tune's experiment
state to record the epoch, i.e. the checkpoint a resumed trial continues from), then acts: no race
against the sweep, however loaded the machine.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from adgan.sweep.trial import HOLD_ENV

SMOKE_SPEC = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def two_trial_spec(path: Path, name: str, epochs: int) -> Path:
    """Write to ``path`` the smoke sweep reduced to GANomaly's one group with two trials that both run
    every one of ``epochs`` epochs (grace = max epochs: ASHA stops none), one per CPU, so that every run of
    it has the same rows whatever the timing; returns ``path``."""
    raw = yaml.safe_load(SMOKE_SPEC.read_text())
    raw["name"] = name
    del raw["models"]["knn"]
    raw["budget"] = {"trials_per_group": 2, "max_epochs": epochs, "grace_period": epochs,
                     "reduction_factor": 2}
    path.write_text(yaml.safe_dump(raw))
    return path


def hold_env(epoch: int, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return {HOLD_ENV: f"{epoch}:{directory}"}


def held_trials(directory: Path) -> set[str]:
    return {p.stem for p in directory.glob("*.held")}


def tune_state_epochs(exp_dir: Path) -> dict[str, int]:
    """``{trial id: last epoch}`` in Tune's newest experiment state (the snapshot ``Tuner.restore`` reads),
    empty while none is readable (Tune writes it beside the trials, possibly just now)."""
    states = sorted(exp_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for trial_json, meta in trial_data:
        last = json.loads(meta).get("last_result") or {}
        if last.get("epoch") is not None and last.get("checkpoint_dir_name"):
            out[json.loads(trial_json)["trial_id"]] = int(last["epoch"])
    return out


def held_and_recorded(hold: Path, exp_dir: Path, epoch: int, n_trials: int) -> Callable[[], bool]:
    """A condition: ``n_trials`` trials hold after ``epoch``, and Tune's state records that epoch for each."""

    def done() -> bool:
        held = held_trials(hold)
        recorded = tune_state_epochs(exp_dir)
        return len(held) == n_trials and all(recorded.get(t) == epoch for t in held)

    return done


def until(done: Callable[[], bool], deadline_s: float = 60.0) -> bool:
    """Wait until ``done()`` (the state of a process that is not our child, or of a file it writes), with a
    generous deadline: a check of state, not a sleep standing in for synchronisation."""
    deadline = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for(proc: subprocess.Popen, done: Callable[[], bool], log: Path, timeout: float) -> None:
    """Poll ``done()`` (state written by the sweep) while ``proc`` runs; fail with the log's tail when the
    sweep ended or ``timeout`` (generous: a loaded machine is slow, not wrong) passed first."""
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting (driver rc={proc.poll()}):\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
