"""The FLOP counter the benchmarks set their speeds against (``benchmarks/flops.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from flops import count_flops  # noqa: E402


def test_counts_matrix_products_forward_and_backward() -> None:
    a = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 4, requires_grad=True)
    assert count_flops(lambda: a @ w) == 2 * 8 * 16 * 4
    # Backward of a product needs two more products of the same size (gradients of both factors).
    assert count_flops(lambda: (a @ w).sum().backward()) == 3 * 2 * 8 * 16 * 4


def test_counts_convolutions_inside_no_grad_with_grad_enabled() -> None:
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)

    def search_like() -> None:  # AnoGAN's search turns gradients on inside no_grad
        with torch.no_grad(), torch.enable_grad():
            z = x.clone().requires_grad_(True)
            conv(z).sum().backward()

    forward = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3
    assert count_flops(search_like) >= 2 * forward  # forward + input gradient (+ weight gradient)
