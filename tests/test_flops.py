"""The FLOP counter and hardware rates the benchmarks set their speeds against (``benchmarks/flops.py``),
and the Winograd convolution of ``benchmarks/fastconv_bound.py``."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from fastconv_bound import winograd_conv, winograd_weight  # noqa: E402
from flops import count_flops, fma_peak_gflops  # noqa: E402


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


@pytest.mark.parametrize(("cin", "cout", "side"), [(3, 5, 8), (4, 6, 16)])
def test_winograd_stride2_convolution_equals_conv2d(cin: int, cout: int, side: int) -> None:
    """The fast-convolution bound is measured on a correct algorithm: F(2x2, 2x2) on the space-to-depth
    form gives the 4x4 stride-2 padding-1 convolution."""
    torch.manual_seed(0)
    x, w = torch.randn(2, cin, side, side), torch.randn(cout, cin, 4, 4)
    want = F.conv2d(x, w, stride=2, padding=1)
    got = winograd_conv(x, winograd_weight(w))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
    shutil.which("gcc") is None or platform.machine() not in ("x86_64", "AMD64"),
    reason="fma_peak.c needs gcc and an x86-64 CPU (AVX2)",
)
def test_fma_peak_is_built_and_reports_a_rate() -> None:
    assert fma_peak_gflops(1, iters=200_000) > 0
