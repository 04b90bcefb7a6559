"""Ray's overhead in a sweep: the share of wall time not spent in training epochs and validation.

Runs a small real sweep (default: GANomaly on ``mnist-5k``, 2 classes x 3 trials, epochs sized so a
trial takes about 30 s here) without ASHA stopping (grace period = max epochs) and without W&B unless
``--wandb``, then compares the time spent inside epochs (training + validation scoring, as measured by
the trials) with the wall time the trial slots were available:

    overhead = 1 - sum(epoch_seconds + eval_seconds) / (wall x concurrent slots)

reported twice: for the whole command (Ray start-up, data check, Tuner, test evaluation) and for the
trials alone (Tune's ``time_total_s`` per trial against the time in epochs).

    python benchmarks/sweep_overhead.py --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-train", type=int, default=1500)
    ap.add_argument("--base-filters", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--wandb", action="store_true", help="log to W&B (offline) as a default sweep does")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("WANDB_MODE", "offline")
    import adgan.sweep  # noqa: F401  (token authentication before Ray is imported)
    from adgan.sweep.results import read_table
    from adgan.sweep.runner import run_sweep
    from adgan.sweep.spec import parse_spec

    raw = {
        "name": "overhead",
        "dataset": {"name": args.dataset, "options": {"max_train": args.max_train}},
        "classes": args.classes,
        "models": {
            "ganomaly": {
                "fixed": {"base_filters": args.base_filters, "latent_dim": 32, "batch_size": 64},
                "search": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-3}},
            }
        },
        "budget": {
            "trials_per_group": args.trials,
            "max_epochs": args.epochs,
            "grace_period": args.epochs,
            "reduction_factor": 3,
        },
        "resources": {"cpus": 1},
    }
    spec = parse_spec(raw, "benchmarks/sweep_overhead.py")
    root = args.out or tempfile.mkdtemp(prefix="adgan-overhead-")
    t0 = time.perf_counter()
    out = run_sweep(spec, results_root=root, use_wandb=args.wandb, num_cpus=args.cpus, progress_every=60)
    wall = time.perf_counter() - t0
    epochs = read_table(out, "epochs")
    trials = read_table(out, "trials")
    in_epochs = sum((e["epoch_seconds"] or 0) + (e["eval_seconds"] or 0) for e in epochs)
    in_trials = sum(t["wall_seconds"] or 0 for t in trials)
    slots = min(args.cpus, len(trials))
    first = min(e["reported_at"] - e["epoch_seconds"] - e["eval_seconds"] for e in epochs)
    last = max(e["reported_at"] for e in epochs)
    # Where a trial's time outside epochs goes, from the epoch rows' report times: ``setup`` = trial start
    # (last report minus Tune's time_total_s) to the start of epoch 1 (imports on a fresh worker, data
    # load, W&B start, model build); ``between`` = gaps between one epoch's report and the next epoch's
    # start (checkpoint save and persistence, W&B logging, waiting for the driver to take the result).
    setup = between = 0.0
    for t in trials:
        mine = sorted((e for e in epochs if e["trial_id"] == t["trial_id"]), key=lambda e: e["epoch"])
        if not mine or not t["wall_seconds"]:
            continue
        start = mine[-1]["reported_at"] - t["wall_seconds"]
        setup += mine[0]["reported_at"] - mine[0]["epoch_seconds"] - mine[0]["eval_seconds"] - start
        for prev, cur in zip(mine, mine[1:], strict=False):
            between += cur["reported_at"] - cur["epoch_seconds"] - cur["eval_seconds"] - prev["reported_at"]
    report = {
        "trials": len(trials),
        "slots": slots,
        "mean_trial_s": in_trials / len(trials),
        "mean_epochs_s_per_trial": in_epochs / len(trials),
        "command_wall_s": wall,
        "overhead_share_command": 1 - in_epochs / (wall * slots),
        "overhead_share_first_to_last_epoch": 1 - in_epochs / ((last - first) * slots),
        "overhead_share_inside_trials": 1 - in_epochs / in_trials,
        "mean_setup_s_per_trial": setup / len(trials),
        "mean_between_epochs_s_per_trial": between / len(trials),
        "wandb": args.wandb,
        "results": str(out),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
