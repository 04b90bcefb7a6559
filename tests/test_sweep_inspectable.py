"""A smoke-sized sweep, its driver SIGKILLed with trials in flight and resumed, inspected as its users
would: every group's Optuna study in the sweep's journal, and the W&B offline runs (trials and the sweep's
summary run)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState
from sweep_hold import held_and_recorded, held_trials, hold_env
from test_sweep import ROOT, _env, _sweep_cmd, kill_driver_when  # the smoke sweep test's helpers
from wandb_records import OfflineRun, read_runs

from adgan.sweep.grouped import OPTUNA_JOURNAL, TRIAL_ID_ATTR, open_studies
from adgan.sweep.results import read_table

pytestmark = pytest.mark.slow
HOLD = 1  # the GANomaly trials hold after reporting this epoch until the driver is killed


def _spec(tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    # ASHA stops no trial (grace = max epochs): both trials in flight reach the held epoch.
    raw["budget"] = {**raw["budget"], "grace_period": raw["budget"]["max_epochs"]}
    path = tmp / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("inspect")
    results, env = tmp / "results", _env(tmp)
    env["WANDB_DATA_DIR"] = str(tmp / "wandb-data")  # where W&B stages offline artifacts
    env["ADGAN_HOME"] = str(tmp / "home")  # this test's record of its local Ray (see adgan.sweep.reaper)
    cmd = [c if c != str(ROOT / "sweeps" / "smoke.yaml") else str(_spec(tmp)) for c in _sweep_cmd(results)]
    out = results / "smoke"
    held = held_and_recorded(tmp / "hold", out / "tune", HOLD, 2)
    killed = kill_driver_when(cmd, env | hold_env(HOLD, tmp / "hold"), tmp / "run1.log",
                              lambda: True if held() else None, 600)
    assert killed, (tmp / "run1.log").read_text()[-3000:]
    # What the killed driver left: the two trials in flight are running trials of their study.
    in_flight = {t.user_attrs[TRIAL_ID_ATTR] for s in open_studies(out).values() for t in s.trials
                 if t.state == TrialState.RUNNING}
    run2 = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-5000:]
    return {"dir": out, "trials": read_table(out, "trials"), "best": read_table(out, "best"),
            "runs": read_runs(out / "wandb"), "held": held_trials(tmp / "hold"), "in_flight": in_flight}


def test_the_journal_holds_every_finished_trial_with_its_value(swept: dict) -> None:
    studies = open_studies(swept["dir"] / OPTUNA_JOURNAL)  # what `optuna-dashboard <journal>` opens
    trials = swept["trials"]
    assert set(studies) == {t["group_id"] for t in trials}
    for gid, study in studies.items():
        mine = {t["trial_id"]: t for t in trials if t["group_id"] == gid}
        complete = {t.user_attrs[TRIAL_ID_ATTR]: t for t in study.trials if t.state == TrialState.COMPLETE}
        assert set(complete) == set(mine), gid  # every finished trial once, no other
        for tid, ot in complete.items():
            assert ot.value == pytest.approx(mine[tid]["best_val_auprc"], rel=1e-12)
            assert ot.user_attrs["status"] == mine[tid]["status"]
            assert ot.params == {k: v for k, v in json.loads(mine[tid]["params"]).items()}
            if mine[tid]["model"] == "ganomaly":
                assert sorted(ot.intermediate_values) == list(range(1, mine[tid]["epochs_run"] + 1))
        # Trials suggested after the snapshot the resume started from never ran: failed, not running.
        others = [t for t in study.trials if t.state != TrialState.COMPLETE]
        assert all(t.state == TrialState.FAIL and t.user_attrs[TRIAL_ID_ATTR] not in mine for t in others)
    # The trials in flight when the driver died continued in their Optuna trial, every epoch recorded.
    assert len(swept["held"]) == 2 and swept["held"] <= swept["in_flight"]
    ganomaly = studies["synthetic-images/c0/ganomaly/fm/s0"]
    for t in ganomaly.trials:
        if t.user_attrs[TRIAL_ID_ATTR] in swept["held"]:
            assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3]


def _trial_runs(swept: dict) -> list[OfflineRun]:
    return [r for r in swept["runs"] if r.job_type == "trial" and r.finished]


def test_trial_runs_hold_the_best_epoch_and_filterable_config(swept: dict) -> None:
    runs = _trial_runs(swept)
    ids = {t["trial_id"] for t in swept["trials"]}
    assert {r.name for r in runs} <= ids and len({r.name for r in runs}) >= len(ids) - 2
    for r in runs:
        curve = [h["val_auprc"] for h in r.history if "val_auprc" in h]
        if not curve:
            continue  # an attempt restarted after its last epoch reports its summary alone
        best = max(curve)
        assert r.summary["val_auprc"] == {"max": best} and r.summary["best_val_auprc"] >= best
        epochs = [h["epoch"] for h in r.history if h.get("val_auprc") == r.summary["best_val_auprc"]]
        assert r.summary["best_epoch"] in epochs or r.summary["best_val_auprc"] > best  # (earlier attempt)
        c = r.config
        assert c["class_name"] == "hstripes" and c["sweep"] == "smoke" and c["trial_id"] == r.name
        assert c["family"] == ("gan" if c["model"] == "ganomaly" else "baseline")
        assert r.tags == ["sweep:smoke", "dataset:synthetic-images"]


def test_the_summary_run_has_the_tables_test_metrics_and_checkpoints(swept: dict) -> None:
    (summary,) = [r for r in swept["runs"] if r.job_type == "sweep-summary"]
    assert summary.finished and summary.group == "smoke/summary" and summary.config["n_groups"] == 2
    groups = summary.summary["groups"]
    for b in swept["best"]:
        rec = groups[b["group_id"]]
        assert rec["trial_id"] == b["trial_id"] and rec["family"] in ("gan", "baseline")
        assert math.isclose(rec["test_auprc"], b["test_auprc"]) and rec["n_test"] == b["n_test"]
    assert summary.summary["best_per_group"]["nrows"] == 2
    assert summary.summary["best_per_class"]["nrows"] == 1  # one class in the smoke sweep
    models = [a for a in summary.artifacts if a.type == "model"]
    assert len(models) == 1 and models[0].name.startswith("smoke-synthetic-images_c0")
    files = {c.path: c.local_path for c in models[0].manifest.contents}
    assert {"detector.json", "state.pt", "sweep_result.json"} <= set(files)
    assert all(Path(p).is_file() for p in files.values())  # staged: `wandb sync` uploads them later
