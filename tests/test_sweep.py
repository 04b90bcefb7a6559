"""The smoke sweep, run for real once (a driver killed mid-sweep, then resumed) and checked many ways."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from adgan.sweep.best import select_best
from adgan.sweep.results import SCHEMA_VERSION, read_table

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "sweeps" / "smoke.yaml"
pytestmark = pytest.mark.slow


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    env.update(
        {
            "RAY_AUTH_TOKEN_PATH": str(tmp / "ray_token"),  # a fresh token, not the user's
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    return env


def _sweep_cmd(results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "adgan.cli",
        "sweep",
        str(SPEC),
        "--results",
        str(results),
        "--cpus",
        "2",
        "--progress-every",
        "5",
        *extra,
    ]


def kill_driver_when(
    cmd: list[str], env: dict[str, str], log: Path, reached: Callable[[], Any], timeout: float
) -> Any:
    """Start the sweep ``cmd``, poll ``reached()`` until it returns something other than None, then
    SIGKILL the driver mid-sweep (and the Ray processes of its session); returns that value (None when
    the sweep ended or ``timeout`` passed first)."""
    value = None
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                value = reached()
                if value is not None:
                    os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-sweep
                    break
                time.sleep(0.2)
            proc.wait(timeout=60)
        finally:
            # Whatever Ray processes the killed driver started (its own session) go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return value


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the smoke sweep, SIGKILL its driver once some trials finished, resume it to the end."""
    tmp = tmp_path_factory.mktemp("sweep")
    results = tmp / "results"
    env = _env(tmp)

    def finished_trials() -> int | None:
        rows = len(read_table(results / "smoke", "trials", missing_ok=True))  # table file and parts
        return rows if rows >= 3 else None

    killed_after = kill_driver_when(_sweep_cmd(results), env, tmp / "run1.log", finished_trials, 600)
    assert killed_after is not None, (tmp / "run1.log").read_text()[-3000:]
    time.sleep(2)
    run2 = subprocess.run(
        _sweep_cmd(results, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-5000:]
    out = results / "smoke"
    return {
        "dir": out,
        "tmp": tmp,
        "env": env,
        "killed_after": killed_after,
        "log1": (tmp / "run1.log").read_text(),
        "stdout": run2.stdout,
        "stderr": run2.stderr,
        "epochs": read_table(out, "epochs"),
        "trials": read_table(out, "trials"),
        "best": read_table(out, "best"),
    }


def test_every_trial_and_group_recorded_once(sweep: dict) -> None:
    trials, epochs, best = sweep["trials"], sweep["epochs"], sweep["best"]
    assert sweep["killed_after"] < 8
    assert len(trials) == 8 and len({t["trial_id"] for t in trials}) == 8
    assert {t["group_id"] for t in trials} == {
        "synthetic-images/c0/ganomaly/fm/s0",
        "synthetic-images/c0/knn/default/s0",
    }
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys))  # the resume duplicated nothing
    for t in trials:
        mine = sorted(e["epoch"] for e in epochs if e["trial_id"] == t["trial_id"])
        assert mine == list(range(1, t["epochs_run"] + 1)), t
    assert len(best) == 2 and all(b["schema_version"] == SCHEMA_VERSION for b in best)
    # Flat columns for pandas/DuckDB users: family, class name, one column per searched hyperparameter.
    for row in (*trials, *epochs, *best):
        assert row["family"] == {"ganomaly": "gan", "knn": "baseline"}[row["model"]]
        assert row["class_name"] == "hstripes"
        if row["model"] == "ganomaly" and row.get("params"):
            assert row["param_lr"] == json.loads(row["params"])["lr"]
    assert all(t["n_val_anomalies"] > 0 for t in trials if t["status"] != "errored")
    for name in ("epochs", "trials", "best"):
        meta = pq.read_schema(sweep["dir"] / f"{name}.parquet").metadata
        assert meta[b"adgan.schema_version"] == str(SCHEMA_VERSION).encode()
    assert not list(sweep["dir"].glob(".*.tmp"))


def test_trials_record_status_node_data_and_version(sweep: dict) -> None:
    for t in sweep["trials"]:
        assert t["status"] in ("completed", "stopped early"), t
        assert t["node_ip"] == "127.0.0.1" and t["node_id"]
        assert t["data_source"] and t["data_n_samples"] > 0 and t["n_train"] > 0
        if t["model"] == "ganomaly":
            assert t["n_train"] == 256  # the spec's max_train
        assert t["code_version"] and t["checkpoint"] and json.loads(t["config"])["model"] == t["model"]
        # the config training ran with, every default filled in (not only what the sweep set)
        config = json.loads(t["config"])
        assert config["image_size"] in (28, 32) and config["threads"] == 1 and config["scale"] is False
        defaults = ("beta1", "w_adv") if t["model"] == "ganomaly" else ("fit_samples",)
        assert all(key in config for key in defaults), config
        assert t["best_val_auprc"] == max(
            e["val_auprc"] for e in sweep["epochs"] if e["trial_id"] == t["trial_id"]
        )
    knn = [t for t in sweep["trials"] if t["model"] == "knn"]
    assert all(t["status"] == "completed" and t["epochs_run"] == 1 for t in knn)  # a baseline: one "epoch"


def test_asha_stopped_a_trial(sweep: dict) -> None:
    gan = [t for t in sweep["trials"] if t["model"] == "ganomaly"]
    stopped = [t for t in gan if t["status"] == "stopped early"]
    assert stopped, [(t["trial_id"], t["epochs_run"], t["best_val_auprc"]) for t in gan]
    assert all(t["epochs_run"] < 3 for t in stopped)
    assert all(t["epochs_run"] == 3 for t in gan if t["status"] == "completed")


def test_optuna_proposed_distinct_configurations(sweep: dict) -> None:
    for model, keys in (("ganomaly", {"lr", "w_con"}), ("knn", {"k"})):
        params = [json.loads(t["params"]) for t in sweep["trials"] if t["model"] == model]
        assert all(set(p) == keys for p in params)
        assert len({json.dumps(p, sort_keys=True) for p in params}) == 4, params


def test_parquet_rows_equal_what_trials_reported(sweep: dict) -> None:
    """Each trial's own log (``metrics.jsonl``, written by ``adgan.train`` in the trial) against the rows."""
    epochs = {(e["trial_id"], e["epoch"]): e for e in sweep["epochs"]}
    n = 0
    for t in sweep["trials"]:
        log = sweep["dir"] / "tune" / t["trial_id"] / "metrics.jsonl"
        recs = [json.loads(line) for line in log.read_text().splitlines()]
        ep = [r for r in recs if r["kind"] == "epoch"]
        assert len(ep) == t["epochs_run"]
        for r in ep:
            row = epochs[(t["trial_id"], r["epoch"])]
            for key in ("val_auprc", "val_auroc", "best_val_auprc", "epoch_seconds"):
                assert row[key] == pytest.approx(r[key], rel=1e-12), key
            losses = json.loads(row["losses"])
            assert losses == pytest.approx({k[5:]: v for k, v in r.items() if k.startswith("loss_")})
            n += 1
    assert n == len(epochs)


def test_best_is_chosen_on_validation_and_tested_once(sweep: dict) -> None:
    for b in sweep["best"]:
        mine = [t for t in sweep["trials"] if t["group_id"] == b["group_id"]]
        assert b["val_auprc"] == max(t["best_val_auprc"] for t in mine)
        assert b["trial_id"] == select_best(mine)["trial_id"]
        assert 0.0 <= b["test_auprc"] <= 1.0 and 0.0 <= b["test_auroc"] <= 1.0 and b["n_test"] > 0
        assert b["n_trials"] == 4
        assert b["n_scored"] == sum(t["best_val_auprc"] is not None for t in mine) == 4  # all reached one


def test_select_best_ignores_test_metrics() -> None:
    """A planted trial best on test but not on validation is not chosen."""
    rows = [
        {
            "trial_id": "a",
            "best_val_auprc": 0.70,
            "test_auprc": 0.60,
            "checkpoint": "/a",
            "status": "completed",
        },
        {
            "trial_id": "b",
            "best_val_auprc": 0.65,
            "test_auprc": 0.99,
            "checkpoint": "/b",
            "status": "completed",
        },
        {
            "trial_id": "c",
            "best_val_auprc": 0.90,
            "test_auprc": 0.10,
            "checkpoint": None,
            "status": "diverged",
        },
        {"trial_id": "d", "best_val_auprc": 0.95, "checkpoint": "/d", "status": "errored"},
    ]
    assert select_best(rows)["trial_id"] == "a"
    assert select_best(rows[2:]) is None


def test_export_scores_without_ray_or_wandb(sweep: dict) -> None:
    """``adgan export`` then ``adgan score`` on raw images, in a process that never imports Ray or W&B."""
    out = sweep["tmp"] / "exported"
    env = sweep["env"]
    r = subprocess.run(
        [sys.executable, "-m", "adgan.cli", "export", str(sweep["dir"]), "--out", str(out), "--per", "class"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (exported,) = [p for p in out.iterdir() if p.is_dir()]
    assert (exported / "detector.json").is_file() and (exported / "sweep_result.json").is_file()
    result = json.loads((exported / "sweep_result.json").read_text())
    assert result["val_auprc"] == max(b["val_auprc"] for b in sweep["best"])
    assert isinstance(result["config"], dict) and isinstance(result["test_at_cutoffs"], dict)  # not JSON text
    assert set(result["test_at_cutoffs"]) == {"best-f1", "fpr-5%", "fpr-1%"}
    script = (
        "import sys, numpy as np\n"
        "from adgan.cli import main\n"
        "from adgan.data.synthetic import synthetic_images\n"
        "x, y, _ = synthetic_images()\n"
        "np.save(sys.argv[1], x[np.r_[0:40, 300:340]][:, 0])  # raw uint8 (N, 28, 28): 40 normal, 40 not\n"
        "args = ['score', '--checkpoint', sys.argv[2], '--input', sys.argv[1], '--output', sys.argv[3],\n"
        "        '--flag', 'fpr-5%']\n"
        "assert main(args) == 0\n"
        "assert 'ray' not in sys.modules and 'wandb' not in sys.modules, 'scoring imported ray or wandb'\n"
    )
    raw, scores = sweep["tmp"] / "raw.npy", sweep["tmp"] / "scores.csv"
    r = subprocess.run(
        [sys.executable, "-c", script, str(raw), str(exported), str(scores)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    values = np.loadtxt(scores, skiprows=1, delimiter=",")
    assert values.shape == (80, 2) and np.isfinite(values).all()
    # The cutoff the checkpoint chose on validation flags what scores at or above it; the card gives its
    # figures on validation and on test (the row's test_at_cutoffs, measured at the group's end).
    cutoff = json.loads((exported / "detector.json").read_text())["meta"]["cutoffs"]["fpr-5%"]["cutoff"]
    assert (values[:, 1] == (values[:, 0] >= cutoff)).all()
    assert f"at score cutoff {cutoff:.9g} (fpr-5%)" in r.stderr
    on_test = result["test_at_cutoffs"]
    assert set(on_test) == {"best-f1", "fpr-5%", "fpr-1%"} and on_test["fpr-5%"]["cutoff"] == cutoff
    card = (exported / "MODEL_CARD.md").read_text()
    t = on_test["fpr-5%"]
    figures = f"{t['precision']:.3f} / {t['recall']:.3f} / {t['f1']:.3f} / {t['false_alarm_rate']:.1%} |"
    assert f"| `fpr-5%` | {cutoff:.9g} | " in card and figures in card


def test_results_moved_elsewhere_still_export(sweep: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Results copied to another place (a cluster's results synced to a laptop) and the original gone:
    ``adgan export`` takes each chosen checkpoint from the copy (the table records absolute paths)."""
    from adgan.cli import main

    copy = sweep["tmp"] / "elsewhere" / "smoke-copy"
    shutil.copytree(sweep["dir"], copy)
    hidden = sweep["dir"].with_name("smoke-hidden")
    sweep["dir"].rename(hidden)  # (this file's tests run one after another, in one process)
    try:
        out = sweep["tmp"] / "exported-from-copy"
        assert main(["export", str(copy), "--out", str(out), "--per", "group"]) == 0, capsys.readouterr().err
        for best in sweep["best"]:
            (exported,) = [p for p in out.iterdir() if best["group_id"]
                           == json.loads((p / "sweep_result.json").read_text())["group_id"]]
            src = copy / Path(best["checkpoint"]).relative_to(sweep["dir"])
            assert (exported / "detector.json").read_bytes() == (src / "detector.json").read_bytes()
        shutil.rmtree(copy / "tune")  # without the checkpoints: the message says what is missing
        assert main(["export", str(copy), "--out", str(out)]) == 2
        assert "holds no copy of it under tune/" in capsys.readouterr().err
    finally:
        hidden.rename(sweep["dir"])


def test_wandb_offline_runs_exist(sweep: dict) -> None:
    runs = sorted((sweep["dir"] / "wandb").glob("offline-run-*"))
    blobs = b"".join(f.read_bytes() for run in runs for f in run.glob("*.wandb"))
    missing = [t["trial_id"] for t in sweep["trials"] if t["trial_id"].encode() not in blobs]
    # The fixture SIGKILLs the driver's whole process group, W&B's service included. A trial closes its
    # W&B run before its last report, so a trial Tune counts as finished has its record; a trial in
    # flight is rerun on resume (a new run). What remains possible: a trial ASHA stopped just before
    # the kill (at most one per slot, --cpus 2) whose run had not been closed yet.
    assert len(missing) <= 2, missing
    assert len(runs) >= len(sweep["trials"]) - len(missing)
    # The sweep's closing lines say where the runs lie and how to upload them (the summary run included).
    hint = f"offline runs in {sweep['dir'] / 'wandb'}; upload them with: wandb sync --project adgan-smoke"
    assert hint in sweep["stderr"], sweep["stderr"][-2000:]


def test_progress_and_best_table(sweep: dict) -> None:
    text = sweep["log1"] + sweep["stderr"]
    assert "groups done" in text and "best val AUPRC" in text
    assert "recommended detector per class" in sweep["stdout"]
    assert "ganomaly" in sweep["stdout"] and "knn" in sweep["stdout"]
    assert np.isfinite([b["test_auprc"] for b in sweep["best"]]).all()


def test_a_dry_run_of_a_resume_is_refused_as_the_resume_would_be(
    sweep: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adgan.cli import main

    results = str(sweep["dir"].parent)
    raw = yaml.safe_load(SPEC.read_text())
    raw["budget"]["trials_per_group"] += 1
    changed = tmp_path / "smoke.yaml"
    changed.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(changed), "--resume", "--dry-run", "--cpus", "2", "--results", results]) == 2
    assert "--resume: the spec differs from the one sweep 'smoke' started with" in capsys.readouterr().err
    assert main(["sweep", str(SPEC), "--resume", "--dry-run", "--cpus", "2", "--results", results]) == 0
    out = capsys.readouterr().out
    assert "--resume continues sweep 'smoke'" in out and "would refuse to start a new one" not in out
    assert main(["sweep", str(SPEC), "--resume", "--dry-run", "--cpus", "2", "--results", str(tmp_path)]) == 2
    assert "--resume: no sweep to resume in" in capsys.readouterr().err


def test_runs_json_records_each_invocation(sweep: dict) -> None:
    from adgan.sweep.provenance import read_runs

    runs = read_runs(sweep["dir"])
    # The first driver was SIGKILLed (its record, left "running", marked "killed" by the resumed one,
    # which finished).
    assert [r["status"] for r in runs] == ["killed", "finished"]
    assert [r["resume"] for r in runs] == [False, True]
    last = runs[-1]
    assert "sweep" in last["command"] and "--resume" in last["command"]
    assert last["machine"]["cpus"] >= 1 and last["machine"]["torch"] and last["cluster"]["cpus"] >= 1
    assert last["wall_seconds"] > 0 and last["budget"] == "default" and last["code_version"]
    meta = json.loads((sweep["dir"] / "spec.json").read_text())
    assert meta["budget_name"] == "default" and meta["effective_budget"]["max_epochs"] == 3
