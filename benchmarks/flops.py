"""Arithmetic counts and the CPU's matrix-product ceiling, to set measured speeds against the hardware.

Usage:
    python benchmarks/flops.py            # fp32 GFLOP/s on 1 and 2 threads: matrix product, convolution

Two rates, each on 1 and 2 threads: a large matrix product (torch's BLAS: MKL, which on AMD CPUs is
not the fastest kernel here) and GANomaly's heaviest convolution (oneDNN, the library every detector's
convolutions run on). The study of one CPU's FMA peak that used to live here is summarised in
benchmarks/README.md.

``count_flops(fn)`` counts the floating-point operations of the matrix products and convolutions that
``fn`` runs (forward and backward), with ``torch.utils.flop_counter``'s formulas.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def best_time(fn: Callable[[], object], repeats: int, calls: int = 1, warmup: int = 2) -> float:
    """Best wall seconds per call of ``fn()``: ``repeats`` timed runs of ``calls`` calls, after ``warmup``
    calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matrix product on ``threads`` torch threads."""
    with torch_threads(threads):
        a, b = torch.randn(n, n), torch.randn(n, n)
        return 2 * n**3 / best_time(lambda: a @ b, repeats) / 1e9


def conv_gflops(threads: int, batch: int = 64, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of GANomaly's heaviest layer shape (4x4 stride-2 convolution, 128->256 channels,
    8x8 -> 4x4, channels_last), forward, on ``threads`` torch threads."""
    with torch_threads(threads):
        x = torch.randn(batch, 128, 8, 8).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 128, 4, 4).contiguous(memory_format=torch.channels_last)

        def conv() -> torch.Tensor:
            return torch.nn.functional.conv2d(x, w, stride=2, padding=1)

        return count_flops(conv) / best_time(conv, repeats, calls=10, warmup=3) / 1e9


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
        rate = conv_gflops(threads)
        print(f"fp32 convolution 128->256 8x8 batch 64, {threads} thread(s): {rate:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
