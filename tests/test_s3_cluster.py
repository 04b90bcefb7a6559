"""``--results s3://...`` for real (tests/test_s3_sweep.py) on a two-node loopback cluster whose worker node
is killed mid-sweep: no row is lost or duplicated."""

from __future__ import annotations

from typing import Any

import pytest
from s3server import S3Server
from test_s3_sweep import (
    TABLES,
    _cli,
    _kill,
    _start,
    _wait,
    tune_state,
)

from adgan.sweep.results import read_table
from adgan.sweep.storage import location

pytestmark = pytest.mark.slow

# ----- a two-node loopback cluster losing its worker node -----
@pytest.fixture(scope="module")
def lost_node(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The lost-node sweep of tests/test_cluster_loopback.py with its results on the store: the worker node
    is SIGKILLed while it runs a trial, after it finished at least one."""
    from localcluster import LoopbackCluster
    from sweep_hold import NodeHolds, worker_busy_after_one
    from test_cluster_loopback import HOLD_EPOCH, SPEC

    tmp = tmp_path_factory.mktemp("s3-cluster")
    uri = s3.bucket_uri("results")
    spec = tmp / "lost.yaml"
    spec.write_text(SPEC.replace("@NAME@", "lost-node"))
    log = tmp / "driver.log"
    out: dict[str, Any] = {"uri": f"{uri}/lost-node"}
    cluster = LoopbackCluster()  # its nodes inherit this process's environment: the store's address
    proc = None
    head_holds, worker_holds = (NodeHolds(tmp / "holds" / n, HOLD_EPOCH) for n in ("head", "worker"))
    try:
        cluster.add_node(num_cpus=1, extra_env=head_holds.env)
        worker = cluster.add_node(num_cpus=1, extra_env=worker_holds.env)
        out["nodes"] = cluster.describe()
        worker_id = out["nodes"]["worker1"]["node_id"]
        cmd = _cli("sweep", str(spec), "--address", cluster.address, "--results", uri, "--no-wandb",
                   "--max-failures", "3", "--progress-every", "5")
        env = cluster.env | {"PYTHONUNBUFFERED": "1", "ADGAN_HOME": str(tmp / "home")}
        proc = _start(cmd, env, log)

        def worker_rows() -> int:
            return sum(r["node_id"] == worker_id for r in read_table(out["uri"], "trials", missing_ok=True))

        # The worker node is killed with a held trial in flight, after it finished one (see sweep_hold).
        _wait(proc, worker_busy_after_one(worker_holds, worker_rows), log, 600)
        out["done_before_kill"] = len(read_table(out["uri"], "trials", missing_ok=True))
        out["held_on_worker"] = worker_holds.waiting()
        cluster.kill_node(worker)
        head_holds.release_all()
        assert proc.wait(timeout=600) == 0, log.read_text()[-5000:]
    finally:
        for h in (head_holds, worker_holds):
            h.release_all()  # no trial process left waiting, whatever failed
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
    assert set(retried) == lost_node["held_on_worker"], "not the trial in flight on the lost node was retried"
    by_id = {t["trial_id"]: t for t in trials}
    assert all(by_id[tid]["node_id"] == head_id for tid in retried)  # finished on the surviving node
    assert sorted(b["group_id"] for b in best) == sorted(GROUPS)
    for b in best:
        assert b["checkpoint"].startswith("s3://")
        assert location(b["checkpoint"]).child("detector.json").is_file()
