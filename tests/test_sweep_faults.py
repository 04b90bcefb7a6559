"""Faults around one real sweep: a second sweep on its results directory, its driver SIGKILLed, a resume.

The sweep's trials hold after their first epoch (tests/sweep_hold.py) so that everything below happens
while the first sweep provably runs: a second ``adgan sweep`` (and a ``--resume``) on the same directory
is refused, naming the holder; the driver alone is SIGKILLed and every process of the local Ray it
started goes (Ray's agents would otherwise linger for minutes); then ``--resume`` takes over the stale
lock and finishes the sweep with the first driver's rows intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from sweep_hold import held_and_recorded, hold_env, two_trial_spec, until, wait_for
from test_sweep import ROOT, _env, _sweep_cmd

from adgan.sweep.lock import LOCK_FILE
from adgan.sweep.provenance import read_runs
from adgan.sweep.reaper import kill_ray, ray_processes
from adgan.sweep.results import read_table
from adgan.sweep.snapshot import COPYING

pytestmark = pytest.mark.slow
EPOCHS = 3


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class HeldSweep:
    """The two-trial sweep ``name`` started in ``tmp`` with its trials holding after epoch 1 (driver output
    in ``log``); :meth:`resume_released` releases them and resumes, :meth:`stop` ends whatever is left."""

    def __init__(self, tmp: Path, name: str, first_only: Sequence[str] = ()) -> None:
        """``first_only``: arguments of the first run only (not of the resume)."""
        spec = two_trial_spec(tmp / f"{name}.yaml", name, EPOCHS)
        results, self.hold, self.home = tmp / "results", tmp / "hold", tmp / "home"
        self.out, self.log = results / name, tmp / "first.log"
        self.env = _env(tmp) | {"ADGAN_HOME": str(self.home)}
        self.cmd = [c if c != str(ROOT / "sweeps" / "smoke.yaml") else str(spec) for c in _sweep_cmd(results)]
        self.cmd.append("--no-wandb")
        with open(self.log, "w") as sink:
            self.first = subprocess.Popen([*self.cmd, *first_only], cwd=ROOT,
                                          env=self.env | hold_env(1, self.hold), stdout=sink,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def resume_released(self) -> subprocess.CompletedProcess:
        (self.hold / "release").touch()
        return subprocess.run([*self.cmd, "--resume"], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=600)

    def stop(self) -> None:
        (self.hold / "release").touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.first.pid, signal.SIGKILL)
        self.first.wait(timeout=60)


def _move_named_checkpoint(exp_dir: Path) -> str:
    """Rename the checkpoint the newest snapshot names for one unfinished trial to the next index; return
    the trial's id."""
    import pyarrow.fs as pafs
    from ray.tune.experiment.trial import Trial, _TrainingRunMetadata

    from adgan.sweep.snapshot import _named

    state = json.loads(max(exp_dir.glob("experiment_state-*.json")).read_text())
    for t, m in state["trial_data"]:
        trial = Trial.from_json_state(t, stub=True)
        latest, _ = _named(_TrainingRunMetadata.from_json_state(m))
        if trial.status == Trial.TERMINATED or latest is None:
            continue
        folder = exp_dir / trial.storage.trial_dir_name
        index = int(latest.rsplit("_", 1)[1])
        assert (folder / latest).is_dir() and not (folder / f"checkpoint_{index + 1:06d}").exists()
        pafs.LocalFileSystem().move(str(folder / latest), str(folder / f"checkpoint_{index + 1:06d}"))
        # And an earlier --resume's copy of it, cut short (its marker still there): made again, not used.
        (folder / latest).mkdir()
        (folder / latest / COPYING).write_text("cut short")
        return trial.trial_id
    raise AssertionError(f"no unfinished trial with a checkpoint in {exp_dir}'s snapshot")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    sweep = HeldSweep(tmp_path_factory.mktemp("faults"), "faults")
    first, hold, home, out, log, env, cmd = (sweep.first, sweep.hold, sweep.home, sweep.out, sweep.log,
                                             sweep.env, sweep.cmd)
    facts: dict = {"out": out, "log": log, "pid": first.pid}
    token = session = None
    try:
        held = held_and_recorded(hold, out / "tune", 1, 2)
        wait_for(first, lambda: held() and len(read_table(out, "epochs", missing_ok=True)) == 2, log, 600)
        facts["epochs_while_held"] = read_table(out, "epochs")
        for name, extra in (("second", []), ("resume_refused", ["--resume"])):
            facts[name] = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                                         timeout=600)
        facts["runs_while_held"] = read_runs(out)
        (record,) = (home / "local-ray").glob("*.json")
        token, session = (json.loads(record.read_text())[k] for k in ("token", "session_dir"))
        facts["ray_processes"] = {pid: _title(pid) for pid in ray_processes(token, session)}

        os.kill(first.pid, signal.SIGKILL)  # the driver alone: its Ray's processes are left to adgan
        first.wait(timeout=60)
        facts["all_gone"] = until(lambda: not ray_processes(token, session), 300)
        said = f"the sweep driver (PID {first.pid}) died; stopped "
        facts["watchdog_said"] = until(lambda: said in log.read_text(), 60)
        facts["record_left"] = record.exists()

        # The race of a driver killed between Tune deleting a trial's checkpoint (a newer one registered)
        # and its snapshot naming the newer one reaching storage: the snapshot names a checkpoint that is
        # gone, and a newer one is there. Made here by moving the named checkpoint to the next index.
        facts["moved"] = _move_named_checkpoint(out / "tune")

        facts["resumed"] = sweep.resume_released()
    finally:
        sweep.stop()
        if token is not None:
            kill_ray(token, session)  # whatever a failure above left
    return facts


def test_a_second_sweep_on_the_directory_is_refused_naming_the_holder(run: dict) -> None:
    holder = f"is in use by another sweep (PID {run['pid']} on {socket.gethostname()}"
    for name in ("second", "resume_refused"):
        r = run[name]
        assert r.returncode == 2 and f"adgan: error: {run['out']} {holder}" in r.stderr, r.stderr[-3000:]
    # Refused before writing anything: the directory still has the first sweep's one record.
    assert [r["status"] for r in run["runs_while_held"]] == ["running"]


def test_the_killed_drivers_local_ray_leaves_nothing_behind(run: dict) -> None:
    titles = list(run["ray_processes"].values())
    assert any("DashboardAgent" in t for t in titles) and any("RuntimeEnvAgent" in t for t in titles), titles
    assert any("raylet" in t for t in titles) and any("gcs_server" in t for t in titles), titles
    assert run["all_gone"], "processes of the killed driver's Ray still run"
    assert run["watchdog_said"], run["log"].read_text()[-3000:]
    assert not run["record_left"]


def test_resume_takes_over_the_stale_lock_and_keeps_the_first_rows(run: dict) -> None:
    r = run["resumed"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert f"taking over the lock of a sweep that is gone (PID {run['pid']} on" in r.stderr
    assert f"adgan: trial {run['moved']}: its snapshot named checkpoint_" in r.stderr, r.stderr[-3000:]
    assert "Could not recover from checkpoint" not in r.stderr + r.stdout
    assert not list((run["out"] / "tune").glob(f"*/checkpoint_*/{COPYING}"))
    out = run["out"]
    trials, epochs = read_table(out, "trials"), read_table(out, "epochs")
    assert len(trials) == 2 and all(t["status"] == "completed" and t["epochs_run"] == EPOCHS for t in trials)
    for t in trials:
        assert sorted(e["epoch"] for e in epochs if e["trial_id"] == t["trial_id"]) == [1, 2, 3]
    before = {(e["trial_id"], e["epoch"]): e["val_auprc"] for e in run["epochs_while_held"]}
    after = {(e["trial_id"], e["epoch"]): e["val_auprc"] for e in epochs}
    assert before and all(after[k] == v for k, v in before.items())  # the first driver's rows are intact
    assert [x["status"] for x in read_runs(out)] == ["killed", "finished"]
    assert (out / LOCK_FILE).read_text() == ""  # released at the end
