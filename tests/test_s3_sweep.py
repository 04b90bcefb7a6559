"""Sweeps with ``--results s3://...`` for real, against an S3-compatible server on 127.0.0.1 (moto, behind a
relay that can cut it off: tests/s3server.py):

the smoke sweep writes every table and record to the bucket (nothing into the working directory), prunes
Tune's storage, and ``adgan best / report / export / score`` read it back from the URI. The helpers here
serve tests/test_s3_resume.py (killed and resumed, an outage) and tests/test_s3_cluster.py (a lost node),
kept in files of their own so that pytest-xdist (``--dist loadfile``) runs the three sweeps side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3server import S3Server
from test_sweep import ROOT, _env

from adgan.sweep.results import read_table
from adgan.sweep.storage import Location, location

pytestmark = pytest.mark.slow
SMOKE = ROOT / "sweeps" / "smoke.yaml"
TABLES = ("epochs", "trials", "best")


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
    names = sorted(p.name for p in exported.iterdir())
    # A checkout with uncommitted changes (a .dirty code version) exports the diff it ran with too.
    dirty = json.loads((exported / "sweep_result.json").read_text())["code_version"].endswith(".dirty")
    diffs = [n for n in names if n.startswith("code-") and n.endswith(".diff")]
    assert len(diffs) == (1 if dirty else 0), names
    assert [n for n in names if n not in diffs] == ["MODEL_CARD.md", "detector.json", "state.pt",
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
    gone = _cli("score", "--checkpoint", chosen + "-gone", "--input", str(raw), "--output", "-")
    r = subprocess.run(gone, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"adgan: error: not found on the store: {chosen}-gone" in r.stderr, r.stderr
