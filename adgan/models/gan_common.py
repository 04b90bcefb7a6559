"""Helpers shared by the GAN detectors' training and scoring loops."""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from adgan.errors import DivergedError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns a torch generator for minibatch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def minibatches(
    n: int, batch_size: int, gen: torch.Generator, drop_last: bool = True
) -> Iterator[torch.Tensor]:
    """Shuffled index tensors for one epoch; the last partial batch is dropped unless it would be all."""
    perm = torch.randperm(n, generator=gen)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield perm[i : i + batch_size]


def adam(params: Iterator[torch.nn.Parameter], lr: float, beta1: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CPU or CUDA when enabled, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 autocast runs on native bf16 kernels on ``device``.

    CUDA: when the GPU supports bf16. CPU: when oneDNN has bf16 kernels (AVX-512 / AMX CPUs). On other
    CPUs (e.g. AVX2 only) bf16 convolutions are emulated: measured 18x slower than float32 on a 2-core
    AVX2 EPYC, so bf16 should stay off there.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def warn_if_slow_bf16(model: str, device: torch.device, bf16: bool) -> None:
    """Warn (once per call site) when bf16 was asked for on a device without native bf16 kernels."""
    if bf16 and not bf16_is_native(device):
        warnings.warn(
            f"{model}: bf16 autocast on {device.type} without native bf16 kernels is emulated and much "
            "slower than float32 (measured 18x for convolutions on an AVX2 CPU); consider bf16=False",
            RuntimeWarning,
            stacklevel=3,
        )


def check_finite(model: str, epoch: int, losses: dict[str, float]) -> None:
    """Raise ``DivergedError`` naming the loss when any loss is NaN or infinite."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        detail = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise DivergedError(f"{model}: training diverged in epoch {epoch + 1} ({detail})")


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


@torch.no_grad()
def score_batched(
    fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """Apply a per-sample scoring function over ``x`` in chunks; returns (N,) float64.

    ``fn`` must score each sample independently (networks in eval mode), so the chunking cannot
    change a score.
    """
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(fn(to_tensor(x[i : i + batch_size], device)).float().cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


@torch.no_grad()
def recalibrate_batchnorm(
    forward: Callable[[torch.Tensor], object],
    modules: Sequence[torch.nn.Module],
    data: torch.Tensor,
    batch_size: int,
    gen: torch.Generator,
    max_samples: int = 2048,
) -> None:
    """Replace the batch-norm running statistics of ``modules`` by exact averages under the current weights.

    During training the running mean/variance are exponential averages over past steps, taken while the
    weights moved; early in training (or with a large learning rate) they lag the weights so much that
    eval-mode outputs differ badly from train-mode ones (anomaly scores can even invert). Here every
    batch-norm layer is reset and re-estimated as the plain average over batches of up to ``max_samples``
    random training samples ("precise BN", Wu & Johnson 2021), with the same batch size as training.

    Args:
        forward: Runs the networks on one batch (N, ...) in the way training does; its result is ignored.
        modules: The networks whose batch-norm layers are recalibrated (others are untouched).
        data: Training inputs (N, ...) on the networks' device.
        batch_size: Batch size of the training steps.
        gen: Generator choosing the samples.
        max_samples: Cap on the samples used (cost: one forward pass over them).
    """
    bn_type = torch.nn.modules.batchnorm._BatchNorm
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, bn_type)]
    if not bns:
        return
    modes = [mod.training for mod in modules]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # None = cumulative average over the batches seen
    for mod in modules:
        mod.train(True)
    seen = 0
    try:
        for idx in minibatches(data.shape[0], batch_size, gen):
            if seen >= max_samples:
                break
            if idx.numel() < 2:  # a batch-norm batch needs two samples
                continue
            forward(data[idx])
            seen += idx.numel()
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for mod, mode in zip(modules, modes, strict=True):
            mod.train(mode)
