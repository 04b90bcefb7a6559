"""AnoGAN latent search: all inputs at once (batched) against one input at a time, at equal Gamma.

Usage:
    python benchmarks/anogan_search.py                      # 64 inputs, Gamma 100, default network size
    python benchmarks/anogan_search.py --n 450 --gamma 500  # cost of scoring a mnist-5k validation split
    python benchmarks/anogan_search.py --threads 1 --base-filters 32
    python benchmarks/anogan_search.py --dim 121 --latent-dim 32  # tabular input (KDD99-sized MLPs)

Both timings run the same code (``AnoGAN.score``): batched = ``score(x)`` on all ``--n`` inputs;
one-at-a-time = ``score(x[i:i+1])`` for the first ``--single`` inputs, extrapolated per input (the cost per
input of the one-at-a-time search does not depend on how many inputs there are). The scores of the two are
compared (they must agree). Weights are untrained (DCGAN initialisation): the cost of a search step does not
depend on the weights' values. The machine may be shared: the load average is printed with the result.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
from flops import count_flops  # benchmarks/flops.py (the script directory is on the path)

from adgan.models import create_detector


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=64, help="inputs searched together")
    parser.add_argument("--single", type=int, default=4, help="inputs searched one at a time (extrapolated)")
    parser.add_argument("--gamma", type=int, default=100, help="search steps (Gamma)")
    parser.add_argument("--side", type=int, default=28, choices=(28, 32))
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--dim", type=int, default=0, help="tabular input of this many features (0 = images)")
    parser.add_argument("--base-filters", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=100)
    parser.add_argument("--loss-case", default="fm", choices=("fm", "bce"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    shape = (args.dim,) if args.dim else (args.channels, args.side, args.side)
    x = np.tanh(rng.standard_normal((args.n, *shape))).astype(np.float32)
    det = create_detector(
        "anogan", epochs=0, gamma_steps=args.gamma, base_filters=args.base_filters,
        latent_dim=args.latent_dim, loss_case=args.loss_case, search_batch_size=max(args.n, 1),
    ).fit(x)  # epochs=0: builds the networks and z0 only
    det.score(x[:2], gamma_steps=2)  # warm-up

    t0 = time.perf_counter()
    batched = det.score(x)
    per_input_batched = (time.perf_counter() - t0) / args.n

    k = min(args.single, args.n)
    t0 = time.perf_counter()
    single = np.array([det.score(x[i : i + 1])[0] for i in range(k)])
    per_input_single = (time.perf_counter() - t0) / k

    rel = float(np.max(np.abs(batched[:k] - single) / np.abs(single)))
    print(
        f"anogan search: n={args.n} gamma={args.gamma} input={'x'.join(map(str, shape))} "
        f"base_filters={args.base_filters} latent={args.latent_dim} loss_case={args.loss_case} "
        f"threads={args.threads} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    total = per_input_batched * args.n
    print(f"batched:        {per_input_batched * 1e3:9.1f} ms per input ({total:.1f} s total)")
    print(f"one at a time:  {per_input_single * 1e3:9.1f} ms per input (timed on {k}, extrapolated)")
    print(f"speed-up: {per_input_single / per_input_batched:.1f}x   max relative score difference: {rel:.2e}")
    # The arithmetic of one search step per input, to set the timings against what the CPU can deliver.
    step_flop = _flop_per_step(det, x[: min(8, args.n)])
    for name, sec in (("batched", per_input_batched), ("one at a time", per_input_single)):
        rate = step_flop * args.gamma / sec / 1e9
        print(f"{name}: {rate:.1f} GFLOP/s ({step_flop / 1e6:.1f} MFLOP per step and input)")


def _flop_per_step(det: Any, x: np.ndarray) -> float:
    """Floating-point operations of one search step per input: the difference of Gamma 3 and Gamma 2
    removes the once-per-input work."""
    two = count_flops(lambda: det.score(x, gamma_steps=2))
    three = count_flops(lambda: det.score(x, gamma_steps=3))
    return (three - two) / len(x)

if __name__ == "__main__":
    main()
