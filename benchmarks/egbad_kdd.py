"""EGBAD on the real KDD99 10% file with the published protocol and threshold.

Usage:
    python benchmarks/egbad_kdd.py                         # default loss case and settings
    python benchmarks/egbad_kdd.py --loss-case bce-bce --epochs 3 --batch-size 256 --seeds 0 1 2
    python benchmarks/egbad_kdd.py --all-cases             # every loss case, one seed each

Protocol (``adgan.data``, as the published EGBAD code): ``normal.`` rows are the anomalies, training on
attack rows only, unscaled features, test resampled to 20% anomalies. The figures are precision, recall and
F1 with the top 20% of test scores flagged (``adgan.metrics.evaluate``), after the last epoch as in the
published code (no model selection). Validation AUROC is printed per epoch with ``--val``.

The machine may be shared: the load average is printed with each result, with the wall time and this
process's CPU time (both include loading the file, training and scoring the test split).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from adgan.data import load_dataset
from adgan.metrics import auroc, evaluate
from adgan.models import create_detector
from adgan.models.egbad import EGBAD

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

# Settings that fit 10 minutes on 2 CPU cores (the published code: 50 epochs of batch 50 at lr 1e-5).
DEFAULTS = {"epochs": 4, "batch_size": 256, "lr": 1e-4}


def run(loss_case: str, seed: int, hparams: dict[str, float], data_dir: Path, val: bool) -> dict[str, float]:
    """Train and evaluate one EGBAD; returns the test metrics plus ``seconds`` (wall) and ``cpu_seconds``
    (this process's CPU time) of load + fit + score."""
    t0, c0 = time.perf_counter(), time.process_time()
    splits = load_dataset("kdd99", 0, seed, data_dir=data_dir, verbose=False)
    det = create_detector("egbad", loss_case=loss_case, **hparams)
    for epoch, losses in enumerate(det.fit_epochs(splits.train.x, seed=seed), 1):
        line = f"  epoch {epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        if val:
            line += f" val_auroc={auroc(splits.val.y, det.score(splits.val.x)):.4f}"
        print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    result = evaluate(splits.test.y, det.score(splits.test.x), q=0.2)
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = time.process_time() - c0
    return result


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
    parser.add_argument("--val", action="store_true", help="print validation AUROC after each epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hparams = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    cases = EGBAD.loss_cases if args.all_cases else (args.loss_case,)
    print(f"egbad kdd99: {hparams}, threads={args.threads}, cpus={os.cpu_count()}")
    for case in cases:
        for seed in args.seeds:
            print(f"{case} seed {seed}", flush=True)
            r = run(case, seed, hparams, args.data_dir, args.val)
            print(
                f"RESULT {case} seed={seed} precision={r['precision']:.4f} recall={r['recall']:.4f} "
                f"f1={r['f1']:.4f} auroc={r['auroc']:.4f} auprc={r['auprc']:.4f} seconds={r['seconds']:.0f} "
                f"cpu_seconds={r['cpu_seconds']:.0f} load={os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
