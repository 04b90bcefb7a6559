"""The shared GAN base: one config of the shared hyperparameters and one training loop for every GAN.

A GAN detector subclasses :class:`GANDetector` and gives only what is its own:

- ``build_networks()``: its networks by name (on the CPU; the loop moves them to the device);
- ``make_optimizers()``: its optimisers by name (``self.adam(params)`` uses the shared ``lr``/``beta1``);
- ``train_step(xb, gen)``: one update on a minibatch, returning its losses as 0-d tensors;
- ``score_batch(xb)``: per-sample scores of a batch with the networks in eval mode (a detector whose
  scoring is not a batched forward pass, such as AnoGAN's latent search, overrides ``score`` instead);
- optionally ``start_fit`` (one-time set-up on a fresh fit: feature scales, a fixed search start),
  ``end_epoch`` (e.g. batch-norm recalibration), ``extra_state`` / ``load_extra_state``.

:meth:`GANDetector._train` (run by ``fit_epochs``) is the loop, readable top to bottom: seeding, build or
resume, optimisers, epochs of shuffled minibatches, per-epoch mean losses checked for finiteness, and one
yield per epoch with the networks in eval mode (so ``score`` can run between epochs) and the training state
tracked (so ``training_state()`` can save it and ``fit_epochs(resume=...)`` continue exactly).

The helpers below (seeding, minibatches, autocast, batched scoring, batch-norm recalibration) are the
GANs' shared plumbing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from adgan.errors import ContractError, DataError, DivergedError
from adgan.models.base import Detector, DetectorConfig
from adgan.models.nets import side_ladder


@dataclasses.dataclass
class GANConfig(DetectorConfig):
    """Hyperparameters every GAN shares; a GAN's own config subclasses this one.

    Attributes:
        lr: Adam learning rate of every optimiser.
        beta1: Adam beta1.
        epochs: Training epochs (0 builds the networks and trains nothing).
        batch_size: Minibatch size; the last partial batch of an epoch is dropped.
        latent_dim: Size of z; 0 = the model's default for the input kind (``auto_latent``).
        base_filters: Width of the networks (images: channels of the first convolution; tabular: the
            hidden width).
    """

    lr: float = 2e-4
    beta1: float = 0.5
    epochs: int = 15
    batch_size: int = 64
    latent_dim: int = 0
    base_filters: int = 64


G = TypeVar("G", bound=GANConfig)


class GANDetector(Detector[G]):
    """Base of the GAN detectors: the training loop, state and scoring plumbing (module docstring).

    Class attributes:
        auto_latent: Latent size used when ``latent_dim`` is 0, by input kind.
    """

    family: ClassVar[str] = "gan"
    is_iterative: ClassVar[bool] = True
    Config: ClassVar[type[DetectorConfig]] = GANConfig
    auto_latent: ClassVar[Mapping[str, int]] = {"image": 100, "tabular": 32}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}  # of the fit in progress

    # ----- what a GAN gives (abstract: register_detector refuses a GAN without them) -----
    @abstractmethod
    def build_networks(self) -> dict[str, nn.Module]:
        """The freshly initialised networks for ``self.input_shape``, by name (the state's keys)."""

    @abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers of ``self.nets``, by name (saved and restored by name)."""

    @abstractmethod
    def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One update on minibatch ``xb`` (B, ...); returns the losses (0-d tensors on the device)."""

    def score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Scores (B,) of a batch (B, ...) with the networks in eval mode; each row depends on itself only.
        Not abstract: a GAN may score otherwise, overriding ``score`` (AnoGAN's per-input latent search)."""
        raise NotImplementedError(f"{self.name}: {type(self).__qualname__} defines neither score_batch nor "
                                  "its own score; a GAN gives one (docs/architecture.md, 'Adding a GAN')")

    def start_fit(self, data: torch.Tensor, gen: torch.Generator) -> None:
        """One-time set-up of a fresh fit after the networks are built (not on resume); ``data`` (N, ...)."""

    def end_epoch(self, data: torch.Tensor, gen: torch.Generator) -> None:
        """Called after each epoch's steps, before the networks go to eval mode."""

    def extra_state(self) -> dict[str, Any]:
        """Fitted values besides the networks' weights (tensors and plain values)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``extra_state`` saved."""

    # ----- shared helpers for subclasses -----
    @property
    def is_image(self) -> bool:
        return self.input_shape is not None and len(self.input_shape) == 3

    def latent_size(self) -> int:
        """The latent size in use: ``latent_dim``, or the model's default for the fitted input kind."""
        if self.config.latent_dim > 0:
            return self.config.latent_dim
        return self.auto_latent["image" if self.is_image else "tabular"]

    def adam(self, params: Iterable[nn.Parameter]) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.config.lr, betas=(self.config.beta1, 0.999))

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast on the detector's device when ``bf16`` was asked for, else a no-op."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def networks(self) -> dict[str, nn.Module]:
        """The networks by name; a detector that was neither fitted nor loaded has none."""
        if not self.nets:
            raise DataError(f"{self.name}: the detector is not fitted; call fit() or load() first")
        return self.nets

    def set_train(self, mode: bool) -> None:
        for net in self.networks().values():
            net.train(mode)

    def check_data(self, input_shape: tuple[int, ...]) -> None:
        """Images of a side the networks are built for; rows in batches of two at least (the tabular
        networks' 1-d batch norm cannot normalise one sample; the image networks' can, over its pixels)."""
        if len(input_shape) == 3:
            side_ladder(input_shape[-1])
        elif self.config.batch_size < 2:
            raise DataError(f"{self.name}: batch_size {self.config.batch_size} on tabular data: the tabular "
                            "networks' batch norm needs batches of 2 samples at least")

    def check_training_data(self, x: np.ndarray) -> None:
        """Two samples at least (batch norm)."""
        if x.shape[0] < 2:
            raise DataError(f"{self.name}: training needs at least 2 samples (batch norm), got {x.shape[0]}")

    # ----- the training loop -----
    def _train(
        self, xs: np.ndarray, seed: int, resume: Mapping[str, Any] | None
    ) -> Iterator[dict[str, float]]:
        """The loop of ``fit_epochs`` on checked input ``xs`` (N, C, H, W) or (N, D); yields mean losses.

        While the generator is suspended at a yield the networks are in eval mode, so ``score`` can be
        called between epochs. ``resume``: a ``training_state()`` of the same config, data and seed.

        Raises:
            DivergedError: A loss became NaN or infinite.
        """
        warn_if_slow_bf16(self.name, self.device, self.bf16)
        gen = seed_everything(seed)
        data = to_tensor(xs, self.device)
        if resume is None:
            self._build()
            self.start_fit(data, gen)
        else:
            self.load_state(resume["state"])
        self.optimizers = self.make_optimizers()
        start = self._resume(resume, self.optimizers, gen) if resume is not None else 0
        batch_size = min(self.config.batch_size, data.shape[0])
        for epoch in range(start, self.config.epochs):
            self.set_train(True)
            sums: dict[str, torch.Tensor] = {}
            steps = 0
            for idx in minibatches(data.shape[0], batch_size, gen):
                losses = self.train_step(data[idx], gen)
                # Summed on the device: a .item() per loss and step would stall a GPU's queue.
                for key, value in losses.items():
                    if not isinstance(value, torch.Tensor):
                        raise ContractError(f"{self.name}: train_step returned {type(value).__name__} for "
                                            f"loss {key!r}; expected a 0-d tensor (the loss, not "
                                            "loss.item())")
                    sums[key] = sums.get(key, 0.0) + value.detach().double()
                steps += 1
            means = {key: float(total) / max(steps, 1) for key, total in sums.items()}
            check_finite(self.name, epoch, means)
            self.end_epoch(data, gen)
            self.set_train(False)
            self.track_progress(epoch + 1, self.optimizers, gen)
            yield means

    def _build(self) -> None:
        """Build the networks for ``self.input_shape`` on ``self.device``."""
        self.nets = {key: net.to(self.device) for key, net in self.build_networks().items()}

    # ----- scoring -----
    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores (N,) float64 of ``x`` shaped like the training data; higher = more anomalous.

        The networks run in eval mode, so each score depends on its own sample only.
        """
        xs = self.check_input(x)
        with self.eval_mode():
            return score_batched(self.score_batch, xs, self.device)

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """The networks in eval mode for the block, their previous modes restored afterwards."""
        nets = list(self.networks().values())
        modes = [net.training for net in nets]
        self.set_train(False)
        try:
            yield
        finally:
            for net, mode in zip(nets, modes, strict=True):
                net.train(mode)

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {**{key: net.state_dict() for key, net in self.networks().items()}, **self.extra_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self._build()
        for key, net in self.nets.items():
            net.load_state_dict(state[key])
        self.load_extra_state(state)
        self.set_train(False)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns a torch generator for minibatch order and noise."""
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
    """Warn when bf16 was asked for on a device without native bf16 kernels."""
    if bf16 and not bf16_is_native(device):
        warnings.warn(
            f"{model}: bf16 autocast on {device.type} without native bf16 kernels is emulated and much "
            "slower than float32 (measured 18x for convolutions on an AVX2 CPU); consider bf16=False",
            RuntimeWarning,
            stacklevel=3,
        )


def check_finite(model: str, epoch: int, losses: Mapping[str, float]) -> None:
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
    """Apply a per-sample scoring function over ``x`` (N, ...) in chunks; returns (N,) float64.

    ``fn`` must score each sample independently (networks in eval mode), so the chunking changes no score
    beyond float rounding: the CPU and GPU kernels chosen for a convolution depend on the batch's size,
    so one sample scored alone and within a batch may differ in the 6th-7th significant digit.
    """
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(fn(to_tensor(x[i : i + batch_size], device)).float().cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


@torch.no_grad()
def recalibrate_batchnorm(
    forward: Callable[[torch.Tensor], object],
    modules: Sequence[nn.Module],
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
    bn_type = nn.modules.batchnorm._BatchNorm
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
