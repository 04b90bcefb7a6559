"""ASHA's saving on one real group: the same trials with and without early stopping.

Runs one group (default: GANomaly on ``mnist-5k``, digit 3) as a real sweep with ASHA switched off
(grace period = maximum epochs), so every trial runs to the full budget, then replays the recorded
per-epoch validation AUPRC of those same trials, in the order they started, through Ray's
``AsyncHyperBandScheduler`` with the grace period and reduction factor under test (sequential replay:
each decision sees every earlier trial, as with one trial at a time). Training is seeded, so a trial
that ASHA lets continue reports exactly what the full-budget run recorded.

    python benchmarks/sweep_asha.py --trials 12 --epochs 12 --grace 1 --rf 3

Prints epochs spent with ASHA against the full budget, and the best validation AUPRC each finds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass


@dataclass
class _Trial:
    trial_id: str


def replay(curves: list[tuple[str, list[float]]], max_t: int, grace: int, rf: float) -> dict[str, float]:
    """Feed per-epoch ``best_val_auprc`` curves, trial after trial, to Ray's ASHA.

    Returns:
        ``{"epochs": epochs run, "best": best validation AUPRC among what was run,
        "stopped": trials stopped early}``.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    asha = AsyncHyperBandScheduler(
        time_attr="epoch",
        metric="best_val_auprc",
        mode="max",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=rf,
    )
    epochs, best, stopped = 0, float("-inf"), 0
    for trial_id, curve in curves:
        trial = _Trial(trial_id)
        asha.on_trial_add(None, trial)
        result = {}
        for e, value in enumerate(curve, start=1):
            epochs += 1
            best = max(best, value)
            result = {"epoch": e, "best_val_auprc": value}
            if asha.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                stopped += e < len(curve)
                break
        if trial_id in asha._trial_info:
            asha.on_trial_complete(None, trial, result)
    return {"epochs": epochs, "best": best, "stopped": stopped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--cls", type=int, default=3)
    ap.add_argument("--model", default="ganomaly", choices=("ganomaly", "egbad"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--grace", type=int, default=1)
    ap.add_argument("--rf", type=float, default=3.0)
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="results root (default: a temporary directory)")
    args = ap.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import adgan.sweep  # noqa: F401  (token authentication before Ray is imported)
    from adgan.sweep.results import read_table
    from adgan.sweep.runner import run_sweep
    from adgan.sweep.spec import parse_spec

    weight = {"ganomaly": "w_con", "egbad": "lam"}[args.model]
    wrange = {"ganomaly": (10, 80), "egbad": (0.05, 0.5)}[args.model]
    raw = {
        "name": f"asha_{args.model}_{args.dataset}_c{args.cls}",
        "dataset": {"name": args.dataset, "options": {"max_train": args.max_train}},
        "classes": [args.cls],
        "models": {
            args.model: {
                "fixed": {"base_filters": 8, "latent_dim": 32, "batch_size": 64},
                "search": {
                    "lr": {"type": "loguniform", "low": 1e-5, "high": 5e-3},
                    weight: {"type": "uniform", "low": wrange[0], "high": wrange[1]},
                },
            }
        },
        # grace period = max epochs: ASHA never stops a trial early, every trial gets the full budget
        "budget": {
            "trials_per_group": args.trials,
            "max_epochs": args.epochs,
            "grace_period": args.epochs,
            "reduction_factor": args.rf,
        },
        "resources": {"cpus": 1},
    }
    spec = parse_spec(raw, "benchmarks/sweep_asha.py")
    root = args.out or tempfile.mkdtemp(prefix="adgan-asha-")
    t0 = time.perf_counter()
    out = run_sweep(spec, results_root=root, use_wandb=False, num_cpus=args.cpus, progress_every=60)
    wall = time.perf_counter() - t0
    epochs = read_table(out, "epochs")
    trials = sorted(
        read_table(out, "trials"),
        key=lambda t: min(e["reported_at"] for e in epochs if e["trial_id"] == t["trial_id"]),
    )
    curves = [
        (
            t["trial_id"],
            [
                e["best_val_auprc"]
                for e in sorted(
                    (e for e in epochs if e["trial_id"] == t["trial_id"]), key=lambda e: e["epoch"]
                )
            ],
        )
        for t in trials
    ]
    full = {"epochs": sum(len(c) for _, c in curves), "best": max(max(c) for _, c in curves)}
    asha = replay(curves, args.epochs, args.grace, args.rf)
    report = {
        "group": f"{args.model} {args.dataset} class {args.cls}",
        "trials": len(curves),
        "max_epochs": args.epochs,
        "grace": args.grace,
        "rf": args.rf,
        "full_epochs": full["epochs"],
        "full_best_val_auprc": full["best"],
        "asha_epochs": asha["epochs"],
        "asha_best_val_auprc": asha["best"],
        "asha_stopped": asha["stopped"],
        "epoch_share": asha["epochs"] / full["epochs"],
        "auprc_gap": full["best"] - asha["best"],
        "full_run_wall_s": wall,
        "results": str(out),
    }
    print(json.dumps(report, indent=2))
    print(
        f"\n| {report['group']} | {len(curves)} x {args.epochs} | {full['epochs']} | {full['best']:.4f} | "
        f"{asha['epochs']} ({report['epoch_share']:.0%}) | {asha['best']:.4f} | {report['auprc_gap']:+.4f} |"
    )


if __name__ == "__main__":
    main()
