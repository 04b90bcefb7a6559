"""Trials per hour of a sweep on a one-node and a two-node loopback Ray cluster (equal nodes).

Each node is a real ``ray start`` node on 127.0.0.1 with ``--cpus-per-node`` CPUs (default 1, so two
nodes use the two cores of a small machine); the sweep runs with ``adgan sweep --address``. Runs
alternate (1 node, 2 nodes, 1 node, ...) so that load from other work on the machine hits both alike;
the load average is printed with each run.

    python benchmarks/cluster_scaling.py [--spec sweeps/smoke.yaml] [--repeats 1]

Per run: the whole command (driver start to exit), the span from the first trial's first report to the
last trial's last report ("trial span"), trials per hour over each, and the time inside trials split
into training+validation (``fit_seconds``) and the rest of Tune's trial time (data load, model set-up,
checkpoint persistence).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the loopback cluster is test infrastructure

from localcluster import LoopbackCluster  # noqa: E402

from adgan.sweep.results import read_table  # noqa: E402
from adgan.sweep.spec import load_spec  # noqa: E402


def run_once(spec_path: str, n_nodes: int, cpus: int) -> dict:
    """Start ``n_nodes`` nodes, run the sweep against them, stop them; the measurements."""
    spec = load_spec(spec_path)
    with tempfile.TemporaryDirectory(prefix="adgan-scal-") as tmp, LoopbackCluster() as cluster:
        for _ in range(n_nodes):
            cluster.add_node(num_cpus=cpus)
        load0 = os.getloadavg()[0]
        cmd = [sys.executable, "-m", "adgan.cli", "sweep", spec_path, "--address", cluster.address]
        cmd += ["--results", tmp, "--no-wandb", "--progress-every", "60"]
        t0 = time.time()
        r = subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode != 0:
            raise SystemExit(r.stdout[-2000:] + r.stderr[-4000:])
        out = Path(tmp) / spec.name
        trials, epochs = read_table(out, "trials"), read_table(out, "epochs")
    timed = [e for e in epochs if e["reported_at"]]
    first = min(e["reported_at"] - (e["epoch_seconds"] or 0) - (e["eval_seconds"] or 0) for e in timed)
    span = max(e["reported_at"] for e in timed) - first
    in_trials = sum(t["wall_seconds"] or 0 for t in trials)
    fit = sum((t["fit_seconds"] or 0) + (t["score_seconds"] or 0) for t in trials)
    return {
        "nodes": n_nodes,
        "trials": len(trials),
        "nodes_used": len({t["node_id"] for t in trials}),
        "wall_s": wall,
        "span_s": span,
        "per_hour_wall": 3600 * len(trials) / wall,
        "per_hour_span": 3600 * len(trials) / span,
        "in_trials_s": in_trials,
        "fit_s": fit,
        "load": (load0, os.getloadavg()[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "smoke.yaml"))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeats):
        for n in (1, 2):
            row = run_once(args.spec, n, args.cpus_per_node)
            rows.append(row)
            print(row, flush=True)
    print(
        "\n| nodes | trials (nodes used) | command s | trial span s | trials/h (command) | trials/h (span) "
        "| s in trials | s training+val | load avg start/end |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['nodes']} | {r['trials']} ({r['nodes_used']}) | {r['wall_s']:.0f} | {r['span_s']:.0f} "
            f"| {r['per_hour_wall']:.0f} | {r['per_hour_span']:.0f} | {r['in_trials_s']:.0f} "
            f"| {r['fit_s']:.0f} | {r['load'][0]:.1f}/{r['load'][1]:.1f} |"
        )
    one = [r for r in rows if r["nodes"] == 1]
    two = [r for r in rows if r["nodes"] == 2]
    for key in ("per_hour_wall", "per_hour_span"):
        a = sum(r[key] for r in one) / len(one)
        b = sum(r[key] for r in two) / len(two)
        print(f"scaling factor ({key}): {b / a:.2f}x")


if __name__ == "__main__":
    main()
