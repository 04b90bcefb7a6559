"""Training throughput and test-time cost of the registered detectors at their default size.

Usage:
    python benchmarks/models.py --model ganomaly            # one model (repeatable), or --model all
    python benchmarks/models.py --model ganomaly --bf16     # bf16 autocast
    python benchmarks/models.py --model egbad --kind tabular --dim 121
    python benchmarks/models.py --model ganomaly --flops    # + arithmetic per sample, GFLOP/s reached

Training throughput: samples/s over whole epochs of ``fit_epochs`` on random data (the first epoch is a
warm-up and not counted), reported as best and median of ``--repeats`` epochs. Test-time cost: ms per
sample of ``score`` on ``--score-n`` samples, best and median of ``--repeats`` calls. The machine may be
shared: the load average is printed with every result, compare only numbers taken under similar load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flops import count_flops  # benchmarks/flops.py (the script directory is on the path)

from adgan.cli import parse_sets
from adgan.models import create_detector, list_detectors
from adgan.models.base import Detector


def synthetic(kind: str, n: int, channels: int, side: int, dim: int, seed: int = 0) -> np.ndarray:
    """Random inputs of the benchmarked shape: (n, C, side, side) in [-1, 1] or (n, dim)."""
    rng = np.random.default_rng(seed)
    if kind == "image":
        return np.tanh(rng.standard_normal((n, channels, side, side))).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32)


def make(name: str, hparams: dict[str, Any]) -> Detector:
    """Build ``name`` with those of ``hparams`` that its config has (baselines lack epochs etc.)."""
    cls = type(create_detector(name))
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    return create_detector(name, **{k: v for k, v in hparams.items() if k in fields})


def train_throughput(
    det: Detector, x: np.ndarray, repeats: int, bf16: bool
) -> tuple[list[float], list[float]]:
    """Samples per wall second and per CPU second (all threads) of each timed epoch.

    Iterative models: the first epoch is a warm-up; others: one ``fit`` per repeat. With one thread on a
    shared machine the per-CPU-second rate estimates what an idle core would do.
    """
    walls: list[float] = []
    cpus: list[float] = []
    if not det.is_iterative:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            det.fit(x)
            walls.append(x.shape[0] / (time.perf_counter() - t0))
            cpus.append(x.shape[0] / (time.process_time() - c0))
        return walls, cpus
    batch = int(getattr(det.config, "batch_size", x.shape[0]))
    per_epoch = x.shape[0] - x.shape[0] % batch
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch, _ in enumerate(det.fit_epochs(x, bf16=bf16)):
        if epoch > 0:
            walls.append(per_epoch / (time.perf_counter() - t0))
            cpus.append(per_epoch / (time.process_time() - c0))
        # Restart the clocks here: excludes anything done while the generator is suspended.
        t0, c0 = time.perf_counter(), time.process_time()
    return walls, cpus


def score_cost(det: Detector, x: np.ndarray, repeats: int) -> list[float]:
    """Milliseconds per sample of ``score(x)`` for each of ``repeats`` calls (after one warm-up call)."""
    det.score(x[: min(len(x), 8)])
    costs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.score(x)
        costs.append((time.perf_counter() - t0) * 1e3 / x.shape[0])
    return costs


def _summary(values: list[float]) -> str:
    return f"best {max(values):8.1f}  median {statistics.median(values):8.1f}"


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench_model(name: str, args: argparse.Namespace, hparams: dict[str, Any], label: str = "",
                patch: Callable[[Detector], None] | None = None, bf16: bool = False) -> None:
    """Print training throughput and (unless ``--no-score``) test-time cost of one configuration."""
    x = synthetic(args.kind, args.n, args.channels, args.side, args.dim)
    det = make(name, {"epochs": args.repeats + 1, **hparams})
    if patch is not None:
        patch(det)
    walls, cpus = train_throughput(det, x, args.repeats, bf16)
    line = f"{name:10s} {label:28s} train samples/s {_summary(walls)}, per CPU-s {_summary(cpus)}"
    if args.flops and det.is_iterative:
        # Arithmetic of one training epoch per sample (a fresh copy of the same configuration, two batches).
        twin = make(name, {**hparams, "epochs": 1})
        if patch is not None:
            patch(twin)
        n = 2 * int(getattr(twin.config, "batch_size", 64))
        per_sample = count_flops(lambda: list(twin.fit_epochs(x[:n], bf16=bf16))) / n
        line += f"; {per_sample / 1e9:.3f} GFLOP/sample = {per_sample * max(cpus) / 1e9:.1f} GFLOP per CPU-s"
    if not args.no_score:
        costs = score_cost(det, x[: args.score_n], args.repeats)
        line += f"   score ms/sample best {min(costs):.4f} median {statistics.median(costs):.4f}"
    print(f"{line}   ({_load()})", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", help="detector name (repeatable) or 'all'")
    parser.add_argument("--kind", choices=("image", "tabular"), default="image")
    parser.add_argument("--side", type=int, default=0, help="image side (default: the model's preferred)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--dim", type=int, default=121, help="tabular feature count")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=1280, help="training samples per epoch")
    parser.add_argument("--score-n", type=int, default=512, help="samples scored per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast during training")
    parser.add_argument("--no-score", action="store_true", help="skip the test-time cost")
    parser.add_argument("--flops", action="store_true",
                        help="count the training arithmetic per sample and the GFLOP/s it reached")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: CPUs available)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra hyperparameter, e.g. --set gamma_steps=100 (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    names = args.model or ["ganomaly"]
    if "all" in names:
        names = list_detectors()
    hparams: dict[str, Any] = {"batch_size": args.batch_size, **parse_sets(args.set)}
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch_size}, n {args.n}, {_load()}")
    for name in names:
        cls = type(create_detector(name))
        if args.kind not in cls.input_kinds:
            print(f"{name:10s} skipped: no {args.kind} input")
            continue
        margs = argparse.Namespace(**{**vars(args), "side": args.side or cls.preferred_image_size})
        bench_model(name, margs, hparams, "bf16" if args.bf16 else "fp32", bf16=args.bf16)
    print(f"# done, {_load()}")


if __name__ == "__main__":
    main()
