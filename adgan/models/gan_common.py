"""Helpers shared by the GAN detectors' training and scoring loops."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch

from adgan.errors import DivergedError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns a torch generator for minibatch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def minibatches(n: int, batch_size: int, gen: torch.Generator, drop_last: bool = True) -> Iterator[torch.Tensor]:
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
