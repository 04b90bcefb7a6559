"""Every GAN model and loss case on real digits: validation AUROC / AUPRC per epoch on ``mnist-5k``.

Usage:
    python benchmarks/loss_cases.py                          # all GANs, all loss cases, digits 0 and 3
    python benchmarks/loss_cases.py --models egbad --classes 0 1 2 --epochs 6
    python benchmarks/loss_cases.py --set base_filters=64    # default network width (slow on 2 cores)

Each run is ``adgan.train.train`` with the model's default hyperparameters except those given here (by
default networks a quarter as wide, ``--max-train`` training normals, AnoGAN's latent search shortened to
``--gamma`` steps), so a whole table fits a few minutes per run on 2 CPU cores. The validation split is
scored after every epoch; the table gives the best epoch's validation AUROC and AUPRC (the checkpoint
``train`` would keep) and, after ``@``, the epoch. AUPRC's chance level is the validation anomaly share,
printed with each class. Test metrics are not computed (model selection only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from adgan.cli import parse_sets
from adgan.models import DETECTORS, list_detectors

GANS = tuple(list_detectors("gan"))


def one_run(model: str, loss_case: str, cls: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration; returns best validation AUROC/AUPRC, their epoch and seconds."""
    from adgan.data import load_dataset
    from adgan.train import resolve_config, train

    config: dict[str, Any] = {
        "model": model, "dataset": args.dataset, "anomaly_class": cls, "seed": args.seed,
        "loss_case": loss_case, "epochs": args.epochs, "max_train": args.max_train or None,
        "threads": args.threads, "base_filters": args.base_filters, "batch_size": 64,
    }
    if model == "anogan":
        config["gamma_steps"] = args.gamma
        config["search_lr"] = args.search_lr
    config.update(args.set)
    t0 = time.perf_counter()
    cfg = resolve_config(config)
    splits = load_dataset(
        args.dataset, cls, args.seed, image_size=cfg["image_size"], max_train=cfg["max_train"], verbose=False
    )
    best: dict[str, Any] = {"val_auroc": float("nan"), "val_auprc": float("nan"), "epoch": 0}
    curve: list[float] = []
    status, anomaly_share = "completed", float(splits.val.y.mean())
    for rec in train(config, splits=splits, evaluate_test=False):
        if rec["kind"] == "epoch":
            curve.append(rec["val_auroc"])
            if not rec["val_auprc"] <= best["val_auprc"]:  # NaN-safe "better"
                best = {"val_auroc": rec["val_auroc"], "val_auprc": rec["val_auprc"], "epoch": rec["epoch"]}
        else:
            status = rec["status"]
    return {"model": model, "loss_case": loss_case, "class": cls, "status": status, **best,
            "auroc_by_epoch": curve, "seconds": time.perf_counter() - t0, "val_anomaly_share": anomaly_share}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(GANS), choices=GANS)
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 3])
    ap.add_argument("--loss-cases", nargs="+", default=None, help="only these loss cases (default: all)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-train", type=int, default=1500, help="0: all training normals")
    ap.add_argument("--base-filters", type=int, default=16)
    ap.add_argument("--gamma", type=int, default=50, help="AnoGAN latent-search steps")
    ap.add_argument("--search-lr", type=float, default=0.01, help="AnoGAN latent-search step size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any hyperparameter")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    args.set = parse_sets(args.set)

    print(f"# {args.dataset}, epochs {args.epochs}, max_train {args.max_train}, base_filters "
          f"{args.base_filters}, threads {args.threads}, cpus {os.cpu_count()}, extra {args.set}", flush=True)
    def cases_of(model: str) -> list[str]:
        return [c for c in DETECTORS.get(model).loss_cases if args.loss_cases is None or c in args.loss_cases]

    rows = []
    for model in args.models:
        for case in cases_of(model):
            for cls in args.classes:
                r = one_run(model, case, cls, args)
                rows.append(r)
                print(f"{model} {case} class {cls}: {r['status']}, best val AUROC {r['val_auroc']:.4f} "
                      f"AUPRC {r['val_auprc']:.4f} @{r['epoch']} (chance {r['val_anomaly_share']:.3f}; "
                      "AUROC by epoch "
                      f"{', '.join(f'{v:.3f}' for v in r['auroc_by_epoch'])}) {r['seconds']:.0f} s "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    print("\n| model | loss case | " + " | ".join(f"digit {c}: val AUROC / AUPRC" for c in args.classes)
          + " | s per run |")
    print("| --- | --- | " + " | ".join("---" for _ in args.classes) + " | --- |")
    for model in args.models:
        for case in cases_of(model):
            mine = [r for r in rows if r["model"] == model and r["loss_case"] == case]
            cells = [f"{r['val_auroc']:.3f} / {r['val_auprc']:.3f} @{r['epoch']}" for r in mine]
            secs = sum(r["seconds"] for r in mine) / len(mine)
            print(f"| {model} | {case} | " + " | ".join(cells) + f" | {secs:.0f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
