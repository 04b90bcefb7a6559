"""Measure the classical baselines (knn, iforest, pca, ocsvm) on real data; prints a Markdown table.

Usage (from the repository root):
    .venv/bin/python benchmarks/baselines.py --dataset kdd99        # scale=False and scale=True (--scale)
    .venv/bin/python benchmarks/baselines.py --dataset mnist-5k     # all ten classes + per-model mean
    .venv/bin/python benchmarks/baselines.py --dataset kdd99 --split val --models knn --set k=1 --set k=5

Each ``--set key=value`` (repeatable) adds one hyperparameter variant for the listed models; without it
every model runs with its defaults. ``--split val`` reports validation metrics, for choosing defaults
without looking at the test split. Timings are wall-clock seconds on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adgan.data import load_dataset  # noqa: E402
from adgan.metrics import evaluate  # noqa: E402
from adgan.models import create_detector, list_detectors  # noqa: E402

MODELS = list_detectors("baseline")
N_CLASSES = {"kdd99": 1, "mnist-5k": 10}


def metric(result: Any, key: str) -> float:
    """``evaluate`` may return a mapping or an object with attributes."""
    return float(result[key] if isinstance(result, dict) else getattr(result, key))


def load(name: str, anomaly_class: int, seed: int, scale: bool | None, data_dir: Path) -> Any:
    """``load_dataset`` with only the keyword arguments it accepts (``scale`` applies to KDD99)."""
    accepted = inspect.signature(load_dataset).parameters
    kwargs: dict[str, Any] = {}
    if scale is not None:
        kwargs["scale"] = scale
    if "data_dir" in accepted:
        kwargs["data_dir"] = data_dir
    return load_dataset(name, anomaly_class, seed, **kwargs)


def parse_sets(items: list[str]) -> list[dict[str, str]]:
    """``["k=1", "k=5,fit_samples=0"]`` -> ``[{"k": "1"}, {"k": "5", "fit_samples": "0"}]``.

    An empty list gives the defaults.
    """
    variants = []
    for item in items:
        pairs = [p.split("=", 1) for p in item.split(",") if p]
        if any(len(p) != 2 for p in pairs):
            raise SystemExit(f"--set expects key=value[,key=value], got {item!r}")
        variants.append(dict(pairs))
    return variants or [{}]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    scales: list[bool | None] = [None]
    if args.dataset == "kdd99":
        scales = {"both": [False, True], "false": [False], "true": [True]}[args.scale]
    classes = args.classes if args.classes is not None else list(range(N_CLASSES[args.dataset]))
    rows = []
    for scale in scales:
        for cls in classes:
            start = time.perf_counter()
            splits = load(args.dataset, cls, args.seed, scale, args.data_dir)
            load_s = time.perf_counter() - start
            part = getattr(splits, args.split)
            print(f"# {args.dataset} class {cls} scale={scale}: train {splits.train.x.shape}, "
                  f"{args.split} {part.x.shape} ({part.y.mean():.1%} anomalies), loaded in {load_s:.1f} s",
                  file=sys.stderr)
            for model in args.models:
                for hp in parse_sets(args.set):
                    det = create_detector(model, **hp)
                    det.fit(splits.train.x, seed=args.seed)
                    scores = det.score(part.x)
                    res = evaluate(part.y, scores)
                    rows.append({
                        "dataset": args.dataset, "class": cls, "scale": scale, "model": model,
                        "hp": ",".join(f"{k}={v}" for k, v in hp.items()) or "defaults",
                        "auprc": metric(res, "auprc"), "auroc": metric(res, "auroc"), "f1": metric(res, "f1"),
                        "fit_s": det.last_fit_seconds, "score_s": det.last_score_seconds,
                    })
                    r = rows[-1]
                    print(f"  {model} {r['hp']}: AUPRC {r['auprc']:.4f} AUROC {r['auroc']:.4f} "
                          f"fit {r['fit_s']:.1f}s score {r['score_s']:.1f}s", file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]], split: str, with_f1: bool) -> str:
    head = ["dataset", "class", "scale", "model", "hyperparameters", f"{split} AUPRC", "AUROC"]
    head += (["F1"] if with_f1 else []) + ["fit s", "score s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def line(r: dict[str, Any], cls: str) -> str:
        cells = [r["dataset"], cls, "-" if r["scale"] is None else str(r["scale"]), r["model"], r["hp"],
                 f"{r['auprc']:.4f}", f"{r['auroc']:.4f}"]
        cells += ([f"{r['f1']:.4f}"] if with_f1 else []) + [f"{r['fit_s']:.2f}", f"{r['score_s']:.2f}"]
        return "| " + " | ".join(cells) + " |"

    lines += [line(r, str(r["class"])) for r in rows]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scale"], r["model"], r["hp"]), []).append(r)
    if any(len(g) > 1 for g in groups.values()):  # several classes: one mean row per model
        for g in groups.values():
            keys = ("auprc", "auroc", "f1", "fit_s", "score_s")
            mean = {k: float(np.mean([r[k] for r in g])) for k in keys}
            lines.append(line({**g[0], **mean}, f"mean of {len(g)}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(N_CLASSES), required=True)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--classes", nargs="+", type=int, default=None, help="default: all classes")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--seed", type=int, default=0, help="split and fit seed")
    parser.add_argument("--scale", choices=["both", "false", "true"], default="both",
                        help="KDD99: min-max scaled features, unscaled, or both (default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    rows = run(args)
    print(table(rows, args.split, with_f1=args.dataset == "kdd99"))


if __name__ == "__main__":
    main()
