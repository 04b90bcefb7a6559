"""EGBAD on the real KDD99 10% file with the published protocol and threshold, through ``adgan.train``.

Usage:
    python benchmarks/egbad_kdd.py                         # default loss case and settings, seed 0
    python benchmarks/egbad_kdd.py --seeds 0 1 2
    python benchmarks/egbad_kdd.py --all-cases             # every loss case, one seed each

Each run is ``adgan.train.train`` (the same as ``adgan train --model egbad --dataset kdd99 --data-dir
../shared/data --epochs 8 --batch-size 256 --lr 1e-4``): the data protocol of the published EGBAD code
(``normal.`` rows are the anomalies, training on attack rows only, unscaled features, test resampled to
20% anomalies); after every epoch the validation split is scored and the epoch with the best validation
AUPRC is kept; only that detector scores the test split. The figures are precision, recall and F1 with the
top 20% of test scores flagged (the published threshold). Unlike the published code, which reports the last
epoch, the epoch is selected on validation: EGBAD's adversarial training swings from epoch to epoch.
Each RESULT line gives the selected epoch's validation AUPRC and AUROC first: a choice made from these runs
(a default loss case, say) is made on those, the test figures being the estimate of the choice.

The machine may be shared: the load average is printed with each result, with the wall time and this
process's CPU time (both include loading the file, training, validation and scoring the test split).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from adgan.models.egbad import EGBAD
from adgan.train import train

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

# Settings that fit 10 minutes on 2 CPU cores (the published code: 50 epochs of batch 50 at lr 1e-5).
DEFAULTS = {"epochs": 8, "batch_size": 256, "lr": 1e-4}


def run(loss_case: str, seed: int, hparams: dict[str, Any], data_dir: Path, threads: int) -> dict[str, Any]:
    """One training run; returns the train loop's summary plus ``cpu_seconds``."""
    config = {"model": "egbad", "dataset": "kdd99", "anomaly_class": 0, "seed": seed,
              "data_dir": str(data_dir), "threads": threads, "loss_case": loss_case, **hparams}
    c0 = time.process_time()
    summary: dict[str, Any] = {}
    for record in train(config):
        if record["kind"] == "epoch":
            print(f"  epoch {record['epoch']}: val AUPRC {record['val_auprc']:.4f} "
                  f"AUROC {record['val_auroc']:.4f} ({record['epoch_seconds']:.0f} s)", flush=True)
        else:
            summary = record
    summary["cpu_seconds"] = time.process_time() - c0
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loss-case", default=EGBAD.loss_cases[0], choices=EGBAD.loss_cases)
    parser.add_argument("--all-cases", action="store_true", help="run every loss case")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    hparams = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    cases = EGBAD.loss_cases if args.all_cases else (args.loss_case,)
    print(f"egbad kdd99: {hparams}, threads={args.threads}, cpus={os.cpu_count()}")
    for case in cases:
        for seed in args.seeds:
            print(f"{case} seed {seed}", flush=True)
            r = run(case, seed, hparams, args.data_dir, args.threads)
            if r["status"] != "completed":
                print(f"RESULT {case} seed={seed} status={r['status']}: {r['message']}", flush=True)
                continue
            print(
                f"RESULT {case} seed={seed} epoch={r['best_epoch']} val_auprc={r['best_val_auprc']:.4f} "
                f"val_auroc={r['best_val_auroc']:.4f} precision={r['test_precision']:.4f} "
                f"recall={r['test_recall']:.4f} f1={r['test_f1']:.4f} auroc={r['test_auroc']:.4f} "
                f"auprc={r['test_auprc']:.4f} seconds={r['wall_seconds']:.0f} "
                f"cpu_seconds={r['cpu_seconds']:.0f} load={os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
