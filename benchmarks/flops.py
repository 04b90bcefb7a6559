"""Arithmetic counts and the CPU's matrix-product ceiling, to set measured speeds against the hardware.

Usage:
    python benchmarks/flops.py            # fp32 matrix-product GFLOP/s on 1 and 2 threads

``count_flops(fn)`` counts the floating-point operations of the matrix products and convolutions that
``fn`` runs (forward and backward), with ``torch.utils.flop_counter``'s formulas.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class _Count(TorchDispatchMode):
    """Sums the registered FLOP formula of every operator that runs.

    ``FlopCounterMode`` itself is not used: its module tracker trips over code that turns gradients on
    inside ``no_grad`` (AnoGAN's latent search does).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if (formula := flop_registry.get(func._overloadpacket)) is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of the matrix products and convolutions run by ``fn()``."""
    with _Count() as mode:
        fn()
    return mode.total


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matrix product on ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[1024, 2048, 4096])
    args = parser.parse_args()
    for threads in (1, 2):
        for n in args.n:
            rate = matmul_gflops(threads, n)
            print(f"fp32 matrix product {n}x{n}, {threads} thread(s): {rate:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
