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


class NodeHolds:
    """The hold folder of one Ray node (``env`` goes into the node's environment, which its trials
    inherit): the test releases its held trials one by one or all, and so decides which trials are in
    flight where when it kills a node or a driver."""

    def __init__(self, folder: Path, epoch: int) -> None:
        self.folder = folder
        self.env = hold_env(epoch, folder)
        self.released: set[str] = set()

    def waiting(self) -> set[str]:
        """Trials held now (not yet released)."""
        if (self.folder / "release").exists():
            return set()
        return held_trials(self.folder) - self.released

    def release(self, trial_id: str) -> None:
        self.released.add(trial_id)
        (self.folder / f"{trial_id}.release").touch()

    def release_all(self) -> None:
        (self.folder / "release").touch()

    def hold_again(self) -> None:
        """Hold the trials that reach the epoch from now on, as at the start (a new sweep's)."""
        for path in [*self.folder.glob("*.held"), *self.folder.glob("*.release"), self.folder / "release"]:
            path.unlink(missing_ok=True)
        self.released.clear()


def worker_busy_after_one(worker: NodeHolds, worker_rows: Callable[[], int]) -> Callable[[], bool]:
    """A condition for losing a worker node with a trial in flight after it finished one (1 CPU per node,
    trials that hold; ``worker_rows()``: the worker's finished trials in the results). The head's held
    trial is never released before (so every other trial runs on the worker); the worker's first held
    trial is released, and its next held one is the trial in flight once a row of the worker is written
    (waiting for the row, never releasing the next: a late flush of the results cannot make it pass by)."""

    def done() -> bool:
        waiting = worker.waiting()
        if not worker.released:
            for trial_id in sorted(waiting)[:1]:
                worker.release(trial_id)
            return False
        return bool(waiting) and worker_rows() > 0

    return done


def finished_while_held(nodes: list[NodeHolds], finished: Callable[[], int], n: int) -> Callable[[], bool]:
    """A condition for killing a driver with ``n`` trials finished and one held in flight: the first ``n``
    held trials (over ``nodes``) are released, later ones stay held; done once ``finished()`` (rows in the
    results) reaches ``n`` while one is held."""

    def done() -> bool:
        released = sum(len(h.released) for h in nodes)
        for h in nodes:
            for trial_id in sorted(h.waiting()):
                if released < n:
                    h.release(trial_id)
                    released += 1
        return finished() >= n and any(h.waiting() for h in nodes)

    return done
