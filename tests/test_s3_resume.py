"""``--results s3://...`` for real (tests/test_s3_sweep.py): a driver SIGKILLed mid-sweep and resumed against
the same URI ends with the rows of an uninterrupted run, and that uninterrupted run went through an outage of
the store (unreachable for some seconds while its trials were in flight) without losing or duplicating a row.

Trials that must be in flight when the test acts hold at a known epoch (the ``ADGAN_TEST_HOLD`` hook,
tests/sweep_hold.py), so nothing depends on timing but the outage's length.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from s3server import S3Server
from sweep_hold import held_trials, hold_env, two_trial_spec
from test_s3_sweep import (
    ROOT,
    TABLES,
    _kill,
    _start,
    _sweep_cmd,
    _sweep_env,
    _wait,
    tune_state,
)

from adgan.sweep.results import read_table
from adgan.sweep.storage import location

pytestmark = pytest.mark.slow

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
    assert [r["status"] for r in interrupted["runs"]] == ["killed", "finished"]  # killed, then resumed
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
