"""Sweeps with ``--results s3://...`` for real, against an S3-compatible server on 127.0.0.1 (moto, behind a
relay that can cut it off: tests/s3server.py):

- the smoke sweep writes every table and record to the bucket (nothing into the working directory), prunes
  Tune's storage, and ``adgan best / report / export / score`` read it back from the URI;
- a driver SIGKILLed mid-sweep and resumed against the same URI ends with the rows of an uninterrupted run,
  and that uninterrupted run went through an outage of the store (unreachable for some seconds while its
  trials were in flight) without losing or duplicating a row;
- on a two-node loopback cluster whose worker node is killed mid-sweep, no row is lost or duplicated.

Trials that must be in flight when the test acts hold at a known epoch (the ``ADGAN_TEST_HOLD`` hook,
tests/sweep_hold.py), so nothing depends on timing but the outage's length.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3server import S3Server, aws_env
from sweep_hold import held_trials, hold_env, two_trial_spec
from test_sweep import ROOT, _env

from adgan.sweep.results import read_table
from adgan.sweep.storage import Location, location

pytestmark = pytest.mark.slow
SMOKE = ROOT / "sweeps" / "smoke.yaml"
TABLES = ("epochs", "trials", "best")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server, aws_env(server.env):  # this process reads the bucket too
        yield server


def _sweep_env(tmp: Path, s3: S3Server) -> dict[str, str]:
    # The store's address and dummy credentials reach the driver and, through Ray, its trials.
    return _env(tmp) | s3.env | {"ADGAN_HOME": str(tmp / "home")}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "adgan.cli", *args]


def _sweep_cmd(spec: Path, uri: str, *extra: str) -> list[str]:
    return _cli("sweep", str(spec), "--results", uri, "--cpus", "2", "--no-wandb", "--progress-every", "5",
                *extra)


def _objects(loc: Location) -> dict[str, int]:
    return dict(loc.files())


def tune_state(exp: Location) -> dict[str, dict[str, Any]]:
    """``{trial id: its metadata}`` in Tune's newest experiment state on the store (empty while none)."""
    names = sorted(n for n in exp.list_files() if n.startswith("experiment_state-"))
    try:
        data = json.loads(exp.child(names[-1]).read_text())["trial_data"] if names else []
    except (OSError, ValueError, KeyError):
        return {}
    return {json.loads(t)["trial_id"]: json.loads(meta) for t, meta in data}


def _wait(proc: subprocess.Popen, done: Callable[[], Any], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting (driver rc={proc.poll()}):\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process of its session (its local Ray, the trials)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# ----- the smoke sweep, read back -----
@pytest.fixture(scope="module")
def smoke(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("s3-smoke")
    cwd = tmp / "cwd"  # the sweep runs here: nothing of the results may land in it
    cwd.mkdir()
    root = s3.bucket_uri("results")
    env = _sweep_env(tmp, s3)
    run = subprocess.run(_sweep_cmd(SMOKE, root), cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    uri = f"{root}/smoke"
    return {"tmp": tmp, "cwd": cwd, "env": env, "uri": uri, "loc": location(uri), "stdout": run.stdout,
            "stderr": run.stderr, **{name: read_table(uri, name) for name in TABLES}}


def test_every_table_and_record_is_in_the_bucket(smoke: dict[str, Any]) -> None:
    objects = _objects(smoke["loc"])
    for name in ("epochs.parquet", "trials.parquet", "best.parquet", "runs.json", "spec.json", "dataset.json",
                 "optuna.journal", "tune/tuner.pkl"):
        assert objects.get(name, 0) > 0, (name, sorted(objects))
    assert not [n for n in objects if ".parts/" in n]  # compacted at the end
    assert "sweep.lock" not in objects  # released
    assert list(smoke["cwd"].iterdir()) == []  # nothing written beside the driver
    assert len(smoke["trials"]) == 8 and len({t["trial_id"] for t in smoke["trials"]}) == 8
    assert len(smoke["best"]) == 2
    keys = [(e["trial_id"], e["epoch"]) for e in smoke["epochs"]]
    assert len(keys) == len(set(keys)) and len(keys) == sum(t["epochs_run"] for t in smoke["trials"])
    assert all(t["checkpoint"].startswith(smoke["uri"] + "/tune/") for t in smoke["trials"])
    runs = json.loads(smoke["loc"].child("runs.json").read_text())
    assert [r["status"] for r in runs] == ["finished"]
    # The Optuna journal is appended to on the driver's disk and copied to the store when the run ends.
    journal = Path(runs[0]["journal"])
    assert journal.is_relative_to(smoke["tmp"] / "home")
    assert smoke["loc"].child("optuna.journal").read_bytes() == journal.read_bytes()
    # Credentials come from the environment only: none is written anywhere in the results.
    blobs = b"".join(smoke["loc"].child(n).read_bytes() for n in objects
                     if not n.endswith((".pt", ".parquet")))
    assert smoke["env"]["AWS_SECRET_ACCESS_KEY"].encode() not in blobs


def test_tune_storage_keeps_only_what_export_and_resume_need(smoke: dict[str, Any]) -> None:
    objects = _objects(smoke["loc"])
    assert not [n for n in objects if n.endswith("train_state.pt")]  # every trial has ended
    assert not [n for n in objects if n.endswith(("progress.csv", ".tfevents")) or "events.out" in n]
    chosen = {b["trial_id"] for b in smoke["best"]}
    for t in smoke["trials"]:
        files = sorted(n for n, _ in location(t["checkpoint"]).files())
        if t["trial_id"] in chosen:
            assert {"detector.json", "state.pt", "finished.json"} <= set(files), files
        else:
            assert files == ["finished.json"], files  # its outcome only


def test_best_report_export_and_score_read_the_uri(smoke: dict[str, Any]) -> None:
    env, uri, tmp = smoke["env"], smoke["uri"], smoke["tmp"]
    best = subprocess.run(_cli("best", uri), cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert best.returncode == 0 and "recommended detector per class" in best.stdout, best.stderr
    report = subprocess.run(_cli("report", uri), cwd=tmp, env=env, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    html = tmp / "smoke-report" / "report.html"  # written locally, beside the command
    assert html.is_file() and uri in html.read_text()
    out = tmp / "exported"
    export = subprocess.run(_cli("export", uri, "--out", str(out)), cwd=tmp, env=env, capture_output=True,
                            text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    (exported,) = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in exported.iterdir()) == ["MODEL_CARD.md", "detector.json", "state.pt",
                                                         "sweep_result.json"]
    # adgan score straight from the chosen checkpoint's URI, and from the export: the same scores.
    from adgan.data.synthetic import synthetic_images

    x, _, _ = synthetic_images()
    raw = tmp / "raw.npy"
    np.save(raw, x[np.r_[0:20, 300:320]][:, 0])
    chosen = json.loads((exported / "sweep_result.json").read_text())["checkpoint"]
    assert chosen.startswith("s3://")
    scores = []
    for ckpt, name in ((chosen, "from-uri.csv"), (str(exported), "from-export.csv")):
        cmd = _cli("score", "--checkpoint", ckpt, "--input", str(raw), "--output", str(tmp / name))
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        scores.append(np.loadtxt(tmp / name, skiprows=1))
    assert scores[0].shape == (40,) and np.array_equal(scores[0], scores[1])


# ----- killed and resumed, against an uninterrupted run through an outage -----
EPOCHS, HOLD = 5, 2
# What meets an outage of the store says: the driver's writer, Tune's own snapshot, a trial's checkpoint.
OUTAGE_MET = ("results not written to", "Saving experiment state", "cannot write to the sweep's storage",
              "cannot fetch the trial's checkpoint")


def _resume_spec(tmp: Path) -> Path:
    return two_trial_spec(tmp / "resume.yaml", "resume", EPOCHS)


@pytest.fixture(scope="module")
def interrupted(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("s3-resume")
    spec, env = _resume_spec(tmp), _sweep_env(tmp, s3)
    out: dict[str, Any] = {}

    # An uninterrupted run; while both trials are in flight (held after epoch HOLD), the store goes away.
    uri = s3.bucket_uri("uninterrupted")
    hold, log = tmp / "hold-u", tmp / "uninterrupted.log"
    proc = _start(_sweep_cmd(spec, uri, "--max-failures", "5"), env | hold_env(HOLD, hold), log)
    try:
        _wait(proc, lambda: len(held_trials(hold)) == 2, log, 600)
        with s3.outage():  # until something met it (however slow the machine), and a few seconds more
            (hold / "release").write_text("")
            _wait(proc, lambda: any(m in log.read_text() for m in OUTAGE_MET), log, 600)
            time.sleep(3)
        assert proc.wait(timeout=600) == 0, log.read_text()[-5000:]
    finally:
        _kill(proc)
    out["uninterrupted"] = {name: read_table(f"{uri}/resume", name) for name in TABLES}
    out["uninterrupted_log"] = log.read_text()
    out["logs"] = tmp  # (for a failure's message: the drivers' logs are there)

    # The same sweep, its driver SIGKILLed while both trials hold after epoch HOLD (and Tune's state on the
    # store records that epoch), then resumed against the same URI.
    uri = s3.bucket_uri("interrupted")
    hold, log = tmp / "hold-k", tmp / "interrupted.log"
    exp = location(f"{uri}/resume/tune")

    def held_and_recorded() -> bool:
        state = tune_state(exp)
        return len(held_trials(hold)) == 2 and all(
            (state.get(t, {}).get("last_result") or {}).get("epoch") == HOLD for t in held_trials(hold))

    proc = _start(_sweep_cmd(spec, uri), env | hold_env(HOLD, hold), log)
    try:
        _wait(proc, held_and_recorded, log, 600)
    finally:
        _kill(proc)
    out["killed_rows"] = len(read_table(f"{uri}/resume", "epochs", missing_ok=True))
    run2 = subprocess.run(_sweep_cmd(spec, uri, "--resume"), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    (tmp / "resumed.log").write_text(run2.stdout + run2.stderr)
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-5000:]
    out["resumed"] = {name: read_table(f"{uri}/resume", name) for name in TABLES}
    for run in ("uninterrupted", "resumed"):  # for a failure's message
        (tmp / f"{run}.json").write_text(json.dumps(out[run], default=str, indent=1))
    out["runs"] = json.loads(location(f"{uri}/resume").child("runs.json").read_text())
    return out


def _by_params(rows: list[dict[str, Any]], *extra: str) -> dict[tuple, dict[str, Any]]:
    """Rows keyed by what two runs of one sweep share (trial ids differ): the trial's hyperparameters."""
    def key(r: dict[str, Any]) -> tuple:
        return (tuple(sorted((k, v) for k, v in r.items() if k.startswith("param_"))), *(r[k] for k in extra))

    keyed = {key(r): r for r in rows}
    assert len(keyed) == len(rows), "two rows with one key"
    return keyed


def test_resumed_run_has_the_rows_of_an_uninterrupted_one(interrupted: dict[str, Any]) -> None:
    full, resumed = interrupted["uninterrupted"], interrupted["resumed"]
    assert [r["status"] for r in interrupted["runs"]] == ["running", "finished"]  # killed, then resumed
    assert 0 < interrupted["killed_rows"] <= 2 * HOLD
    for name, key, values in (
        ("trials", (), ("status", "epochs_run", "best_epoch", "best_val_auprc", "best_val_auroc")),
        ("epochs", ("epoch",), ("val_auprc", "val_auroc", "best_val_auprc", "is_best", "losses")),
        ("best", (), ("val_auprc", "best_epoch", "test_auprc", "test_auroc", "test_f1")),
    ):
        a, b = _by_params(full[name], *key), _by_params(resumed[name], *key)
        assert a.keys() == b.keys(), name  # the same keys: nothing lost, nothing duplicated
        for k in a:
            for v in values:
                assert a[k][v] == pytest.approx(b[k][v], rel=1e-9) if isinstance(a[k][v], float) \
                    else a[k][v] == b[k][v], (name, k, v, a[k], b[k], interrupted["logs"])
    assert len(full["trials"]) == 2 and all(t["epochs_run"] == EPOCHS for t in full["trials"])
    assert len(full["epochs"]) == 2 * EPOCHS


def test_an_outage_of_the_store_lost_no_row(interrupted: dict[str, Any]) -> None:
    """The uninterrupted run's store was away for seconds while trials reported: every row is there once
    (checked against the other run above), and the run says what happened."""
    log = interrupted["uninterrupted_log"]
    rows = interrupted["uninterrupted"]["epochs"]
    assert sorted((r["trial_id"], r["epoch"]) for r in rows) == sorted(
        (t["trial_id"], e) for t in interrupted["uninterrupted"]["trials"] for e in range(1, EPOCHS + 1))
    # Something met the outage: the driver's writer, Tune's own snapshot, or a trial's checkpoint upload.
    assert any(m in log for m in OUTAGE_MET), log[-4000:]


# ----- a two-node loopback cluster losing its worker node -----
@pytest.fixture(scope="module")
def lost_node(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The lost-node sweep of tests/test_cluster_loopback.py with its results on the store: the worker node
    is SIGKILLed while it runs a trial, after it finished at least one."""
    from localcluster import LoopbackCluster
    from test_cluster_loopback import SPEC, _title

    tmp = tmp_path_factory.mktemp("s3-cluster")
    uri = s3.bucket_uri("results")
    spec = tmp / "lost.yaml"
    spec.write_text(SPEC.replace("@NAME@", "lost-node"))
    log = tmp / "driver.log"
    out: dict[str, Any] = {"uri": f"{uri}/lost-node"}
    cluster = LoopbackCluster()  # its nodes inherit this process's environment: the store's address
    proc = None
    try:
        cluster.add_node(num_cpus=1)
        worker = cluster.add_node(num_cpus=1)
        out["nodes"] = cluster.describe()
        worker_id = out["nodes"]["worker1"]["node_id"]
        cmd = _cli("sweep", str(spec), "--address", cluster.address, "--results", uri, "--no-wandb",
                   "--max-failures", "3", "--progress-every", "5")
        env = cluster.env | {"PYTHONUNBUFFERED": "1", "ADGAN_HOME": str(tmp / "home")}
        proc = _start(cmd, env, log)

        def worker_busy_again() -> bool:
            done = [r for r in read_table(out["uri"], "trials", missing_ok=True) if r["node_id"] == worker_id]
            busy = [p for p in worker.pids() if _title(p).startswith("ray::") and ".train" in _title(p)]
            return bool(done) and bool(busy)

        _wait(proc, worker_busy_again, log, 300)
        out["done_before_kill"] = len(read_table(out["uri"], "trials", missing_ok=True))
        cluster.kill_node(worker)
        assert proc.wait(timeout=400) == 0, log.read_text()[-5000:]
    finally:
        if proc is not None:
            _kill(proc)
        cluster.shutdown()
    out.update({name: read_table(out["uri"], name) for name in TABLES})
    out["state"] = tune_state(location(out["uri"]).child("tune"))
    return out


def test_lost_worker_node_loses_and_duplicates_no_row(lost_node: dict[str, Any]) -> None:
    from test_cluster_loopback import GAN_TRIALS, GROUPS, KNN_TRIALS

    trials, epochs, best = lost_node["trials"], lost_node["epochs"], lost_node["best"]
    head_id, worker_id = (lost_node["nodes"][n]["node_id"] for n in ("head", "worker1"))
    assert lost_node["done_before_kill"] < GAN_TRIALS + KNN_TRIALS
    assert len(trials) == GAN_TRIALS + KNN_TRIALS == len({t["trial_id"] for t in trials})
    assert all(t["status"] in {"completed", "stopped early"} for t in trials), trials
    assert {t["node_id"] for t in trials} == {head_id, worker_id}  # both nodes wrote to the store
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys))
    for t in trials:
        assert sorted(e["epoch"] for e in epochs if e["trial_id"] == t["trial_id"]) == list(
            range(1, t["epochs_run"] + 1))
    retried = [tid for tid, meta in lost_node["state"].items() if meta.get("num_failures")]
    assert retried, "no trial was restarted after the worker node died"
    by_id = {t["trial_id"]: t for t in trials}
    assert all(by_id[tid]["node_id"] == head_id for tid in retried)  # finished on the surviving node
    assert sorted(b["group_id"] for b in best) == sorted(GROUPS)
    for b in best:
        assert b["checkpoint"].startswith("s3://")
        assert location(b["checkpoint"]).child("detector.json").is_file()
