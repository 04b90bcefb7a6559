"""ASHA's saving on one real group: the same trials with and without early stopping.

Runs one group (default: GANomaly on ``mnist-5k``, digit 3) as a real sweep with ASHA switched off
(grace period = maximum epochs), so every trial runs to the full budget, then replays the recorded
per-epoch validation AUPRC of those same trials, in the order they started, through Ray's
``AsyncHyperBandScheduler`` with the grace period and reduction factor under test (sequential replay:
each decision sees every earlier trial, as with one trial at a time). Training is seeded, so a trial
that ASHA lets continue reports exactly what the full-budget run recorded.

    python benchmarks/sweep_asha.py --trials 12 --epochs 12 --grace 1 --rf 3
    python benchmarks/sweep_asha.py --model egbad --dataset kdd99 --cls 0 --max-train 0 \\
        --data-dir ../shared/data --trials 12 --epochs 8 --grace 1 2 3 --rf 2 3 4
    python benchmarks/sweep_asha.py --replay RESULTS_ROOT/asha_egbad_kdd99_c0 --grace 1 2 3 --rf 3


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


def curves_of(out: str) -> list[tuple[str, list[float]]]:
    """Per-trial ``best_val_auprc`` by epoch from a sweep's Parquet files, in the order trials started."""
    from adgan.sweep.results import read_table

    epochs = read_table(out, "epochs")
    trials = sorted(
        read_table(out, "trials"),
        key=lambda t: min(e["reported_at"] for e in epochs if e["trial_id"] == t["trial_id"]),
    )
    return [
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


def full_budget_run(args: argparse.Namespace) -> tuple[str, float]:
    """Run the group with every trial to ``args.epochs``; returns (results directory, wall seconds)."""
    from adgan.data import dataset_kind
    from adgan.sweep.runner import run_sweep
    from adgan.sweep.spec import parse_spec

    weight = {"ganomaly": "w_con", "egbad": "lam"}[args.model]
    wrange = {"ganomaly": (10, 80), "egbad": (0.05, 0.5)}[args.model]
    if dataset_kind(args.dataset) == "image":
        fixed: dict[str, object] = {"base_filters": 8, "latent_dim": 32, "batch_size": 64}
        lr = (1e-5, 5e-3)
    else:  # KDD99-sized MLPs: the settings of sweeps/kdd99.yaml
        fixed = {"batch_size": 256}
        lr = (1e-5, 1e-3)
    model: dict[str, object] = {
        "fixed": fixed,
        "search": {
            "lr": {"type": "loguniform", "low": lr[0], "high": lr[1]},
            weight: {"type": "uniform", "low": wrange[0], "high": wrange[1]},
        },
    }
    if args.loss_case:
        model["loss_cases"] = [args.loss_case]
    options: dict[str, object] = {"max_train": args.max_train or None}
    if args.data_dir:
        options["data_dir"] = args.data_dir
    raw = {
        "name": f"asha_{args.model}_{args.dataset}_c{args.cls}",
        "dataset": {"name": args.dataset, "options": options},
        "classes": [args.cls],
        "models": {args.model: model},
        # grace period = max epochs: ASHA never stops a trial early, every trial gets the full budget
        "budget": {
            "trials_per_group": args.trials,
            "max_epochs": args.epochs,
            "grace_period": args.epochs,
            "reduction_factor": 3,
        },
        "resources": {"cpus": 1},
    }
    spec = parse_spec(raw, "benchmarks/sweep_asha.py")
    root = args.out or tempfile.mkdtemp(prefix="adgan-asha-")
    t0 = time.perf_counter()
    out = run_sweep(spec, results_root=root, use_wandb=False, num_cpus=args.cpus, progress_every=60)
    return str(out), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--cls", type=int, default=3)
    ap.add_argument("--model", default="ganomaly", choices=("ganomaly", "egbad"))
    ap.add_argument("--loss-case", default=None, help="default: the model's default")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--grace", type=int, nargs="+", default=[1], help="grace periods to replay")
    ap.add_argument("--rf", type=float, nargs="+", default=[3.0], help="reduction factors to replay")
    ap.add_argument("--max-train", type=int, default=1000, help="0: all training normals")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="results root (default: a temporary directory)")
    ap.add_argument("--replay", default=None, help="replay the results directory of an earlier full run")
    args = ap.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import adgan.sweep  # noqa: F401  (token authentication before Ray is imported)

    out, wall = (args.replay, float("nan")) if args.replay else full_budget_run(args)
    curves = curves_of(out)
    max_t = max(len(c) for _, c in curves)
    full = {"epochs": sum(len(c) for _, c in curves), "best": max(max(c) for _, c in curves)}
    group = f"{args.model} {args.dataset} class {args.cls}"
    print(json.dumps({"group": group, "trials": len(curves), "max_epochs": max_t,
                      "full_epochs": full["epochs"], "full_best_val_auprc": full["best"],
                      "full_run_wall_s": wall, "results": out}, indent=2))
    print("\n| group | trials x epochs | grace | rf | full-budget epochs | full best | ASHA epochs (share) "
          "| ASHA best | gap | stopped |")
    for grace in args.grace:
        for rf in args.rf:
            asha = replay(curves, max_t, grace, rf)
            print(
                f"| {group} | {len(curves)} x {max_t} | {grace} | {rf:g} | {full['epochs']} | "
                f"{full['best']:.4f} | {asha['epochs']} ({asha['epochs'] / full['epochs']:.0%}) | "
                f"{asha['best']:.4f} | {full['best'] - asha['best']:+.4f} | {asha['stopped']} |"
            )


if __name__ == "__main__":
    main()
