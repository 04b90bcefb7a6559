"""GANomaly (Akcay et al. 2018): an encoder-decoder-encoder generator judged by a discriminator.

Networks: encoder ``GE`` (x -> z), decoder ``GD`` (z -> x_hat), second encoder ``E`` (x_hat -> z_hat) and
discriminator ``D`` (x -> features, logit). Images (N, C, 28|32, 28|32) use the DCGAN networks of
``adgan.models.nets``; tabular input (N, D) uses MLPs ``D -> base_filters -> latent_dim`` and back (batch
norm and LeakyReLU in the hidden layer, linear output: tabular features need not lie in [-1, 1]).

Generator loss: ``w_adv * L_adv + w_con * |x - x_hat|_1 + w_enc * |GE(x) - E(x_hat)|_2^2`` (means over
elements), with ``L_adv`` by loss case:
- ``"fm"`` (default): feature matching, the mean squared difference between D's last hidden features of
  each x and of its own reconstruction x_hat (paired, as in the original code);
- ``"bce"``: binary cross-entropy of D(x_hat) against the "real" label.
The discriminator is trained with BCE (real vs. reconstructed). As in the original code, D is
re-initialised (weights and its Adam state) when its loss falls below 1e-5, i.e. it has won outright and
gives the generator no gradient.

Score: ``mean_k (GE(x)_k - E(GD(GE(x)))_k)^2``, the squared latent distance averaged over the
``latent_dim`` dimensions, networks in eval mode, float64. No per-batch or per-set normalisation (the
original code min-max normalises per test set, making scores depend on what else is scored).

Speed: one training step runs G once and D once on x and once on x_hat. Both losses come from that one
forward: the generator gradient is taken w.r.t. G's parameters only and the discriminator gradient
w.r.t. D's only (``torch.autograd.grad``), which is exactly the original sequential G-then-D update
(the original D step reuses the pre-update x_hat and D's parameters are unchanged by the G step) with
two of its four D passes and the D weight gradients of the G step removed. Images run in channels_last
memory format, and the networks' whole-map layers run as matrix products (``nets.WholeMapConv2d``).
``bf16=True`` runs the forward passes under bf16 autocast: a win on GPUs and AVX-512/AMX CPUs, a large
loss on AVX2-only CPUs (a warning says so). Measurements: ``benchmarks/models.py --levers``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adgan.errors import ConfigError, DataError
from adgan.models import gan_common as gc
from adgan.models.base import Detector, DetectorConfig, register_detector
from adgan.models.nets import ImageDecoder, ImageEncoder, MLPDiscriminator, dcgan_init, mlp

# D's loss below this means it separates real from fake perfectly; the original code then re-inits D.
D_COLLAPSE = 1e-5


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    """Mean BCE of ``logits`` (N, 1) against a constant label, in float32."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


@dataclasses.dataclass
class GanomalyConfig(DetectorConfig):
    """GANomaly hyperparameters (shared vocabulary plus the three loss weights).

    Attributes:
        lr: Adam learning rate of both optimisers.
        beta1: Adam beta1.
        epochs: Training epochs.
        batch_size: Minibatch size (the last partial batch of an epoch is dropped).
        latent_dim: Size of z.
        base_filters: Images: channels of the first convolution. Tabular: hidden width of the MLPs.
        w_adv: Weight of the adversarial term.
        w_con: Weight of the L1 reconstruction term.
        w_enc: Weight of the latent (encoder) L2 term.
        loss_case: ``"fm"`` (feature matching) or ``"bce"`` adversarial term.
    """

    lr: float = 2e-4
    beta1: float = 0.5
    epochs: int = 15
    batch_size: int = 64
    latent_dim: int = 100
    base_filters: int = 64
    w_adv: float = 1.0
    w_con: float = 50.0
    w_enc: float = 1.0
    loss_case: str = "fm"


@register_detector
class Ganomaly(Detector):
    """GANomaly detector; see the module docstring for losses, score and speed notes."""

    name: ClassVar[str] = "ganomaly"
    Config: ClassVar[type[DetectorConfig]] = GanomalyConfig
    loss_cases: ClassVar[tuple[str, ...]] = ("fm", "bce")
    input_kinds: ClassVar[tuple[str, ...]] = ("image", "tabular")
    preferred_image_size: ClassVar[int] = 32
    is_iterative: ClassVar[bool] = True
    # Image tensors in channels_last: faster oneDNN convolutions on CPU, same results up to rounding.
    channels_last: ClassVar[bool] = True

    config: GanomalyConfig

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        cfg = self.config
        for key in ("epochs", "latent_dim"):  # stricter than the shared ranges (Detector.__init__)
            if getattr(cfg, key) < 1:
                raise ConfigError(f"hyperparameter {key!r} of model {self.name!r}: expected >= 1, "
                                  f"got {getattr(cfg, key)!r}")
        self.GE: nn.Module | None = None
        self.GD: nn.Module | None = None
        self.E: nn.Module | None = None
        self.D: nn.Module | None = None
        self.d_reinits = 0

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Small, fast hyperparameters for tests (still learns the synthetic test cases)."""
        return {"base_filters": 8, "latent_dim": 16, "batch_size": 32, "epochs": 2, "lr": 2e-3}

    # ----- networks -----
    def _build(self) -> None:
        """Create the four networks for ``self.input_shape`` on ``self.device`` (DCGAN init)."""
        assert self.input_shape is not None
        cfg = self.config
        if len(self.input_shape) == 3:
            shape = self.input_shape
            self.GE = ImageEncoder(shape, cfg.latent_dim, cfg.base_filters)
            self.GD = ImageDecoder(cfg.latent_dim, shape, cfg.base_filters)
            self.E = ImageEncoder(shape, cfg.latent_dim, cfg.base_filters)
            self.D = ImageEncoder(shape, 1, cfg.base_filters)
        else:
            (dim,) = self.input_shape
            hid = cfg.base_filters
            # Batch norm in the hidden layer, as in the image networks: without it the latent score of
            # small tabular networks is much weaker (AUROC ~0.8 vs ~0.98 on the contract test's data).
            self.GE = mlp([dim, hid, cfg.latent_dim], batch_norm=True)
            self.GD = mlp([cfg.latent_dim, hid, dim], batch_norm=True)
            self.E = mlp([dim, hid, cfg.latent_dim], batch_norm=True)
            self.D = MLPDiscriminator(dim, [hid])
        for net in self._nets():
            self._init_weights(net)
            net.to(self.device, memory_format=self._memory_format())

    def _init_weights(self, net: nn.Module) -> None:
        """DCGAN initialisation for image networks; PyTorch's default (Kaiming-uniform) for the MLPs,
        where N(0, 0.02) weights shrink the signal so much that the tabular networks barely train."""
        if self.input_shape is not None and len(self.input_shape) == 3:
            net.apply(dcgan_init)
        else:
            for mod in net.modules():
                if isinstance(mod, nn.Linear):
                    mod.reset_parameters()

    def _nets(self) -> list[nn.Module]:
        if self.GE is None or self.GD is None or self.E is None or self.D is None:
            raise DataError(f"{self.name}: the detector is not fitted; call fit() or load() first")
        return [self.GE, self.GD, self.E, self.D]

    def _memory_format(self) -> torch.memory_format:
        is_image = self.input_shape is not None and len(self.input_shape) == 3
        return torch.channels_last if is_image and self.channels_last else torch.contiguous_format

    def _set_mode(self, train: bool) -> None:
        for net in self._nets():
            net.train(train)

    # ----- training -----
    def fit_epochs(
        self,
        x: np.ndarray,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        resume: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, float]]:
        """Train on normal samples ``x`` ((N, C, H, W) or (N, D)), yielding mean losses per epoch.

        Yields:
            ``{"loss_d", "loss_g", "loss_adv", "loss_con", "loss_enc"}``: means over the epoch's steps.
            While the generator is suspended at a yield the networks are in eval mode, so ``score``
            can be called between epochs.

        Raises:
            DivergedError: A loss became NaN or infinite.
        """
        self._set_input(x, device, bf16)
        gc.warn_if_slow_bf16(self.name, self.device, self.bf16)
        xs = self.check_input(x)
        if xs.shape[0] < 2:
            raise DataError(f"{self.name}: training needs at least 2 samples (batch norm), got {xs.shape[0]}")
        gen = gc.seed_everything(seed)
        if resume is None:
            self._build()
            self.d_reinits = 0
        else:
            self.load_state(resume["state"])  # networks and D re-initialisation count
        cfg = self.config
        data = gc.to_tensor(xs, self.device)
        GE, GD, E, D = self._nets()
        g_params = [p for net in (GE, GD, E) for p in net.parameters()]
        d_params = list(D.parameters())
        opt_g = gc.adam(iter(g_params), cfg.lr, cfg.beta1)
        opt_d = gc.adam(iter(d_params), cfg.lr, cfg.beta1)
        names = ("loss_d", "loss_g", "loss_adv", "loss_con", "loss_enc")
        start = self._resume(resume, {"g": opt_g, "d": opt_d}, gen) if resume is not None else 0
        for epoch in range(start, cfg.epochs):
            self._set_mode(True)
            total = torch.zeros(len(names), device=self.device)
            steps = 0
            for idx in gc.minibatches(data.shape[0], cfg.batch_size, gen):
                xb = data[idx].contiguous(memory_format=self._memory_format())
                losses = self._step(xb, g_params, d_params, opt_g, opt_d)
                total += losses
                steps += 1
                # One host sync per step, needed for the collapse test as in the original code.
                if losses[0].item() < D_COLLAPSE:
                    self._reinit_d(opt_d)
            means = {k: float(v) for k, v in zip(names, (total / max(steps, 1)).tolist(), strict=True)}
            gc.check_finite(self.name, epoch, means)
            # Scoring uses GE, GD and E in eval mode: give them running statistics of the current weights.
            # 1024 samples: enough for stable statistics; costs ~5% of an epoch of 4000 samples.
            gc.recalibrate_batchnorm(self._reconstruct, [GE, GD, E], data, cfg.batch_size, gen, 1024)
            self._set_mode(False)
            self._track(epoch + 1, {"g": opt_g, "d": opt_d}, gen)
            yield means

    def _step(
        self,
        xb: torch.Tensor,
        g_params: list[nn.Parameter],
        d_params: list[nn.Parameter],
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
    ) -> torch.Tensor:
        """One simultaneous G and D update on batch ``xb``; returns the detached losses (5,)."""
        cfg = self.config
        GE, GD, E, D = self._nets()
        with gc.autocast(self.device, self.bf16):
            z = GE(xb)
            x_hat = GD(z)
            z_hat = E(x_hat)
            feat_real, logit_real = D.forward_features(xb)
            feat_fake, logit_fake = D.forward_features(x_hat)
        # Losses in float32 whatever the autocast dtype.
        if cfg.loss_case == "fm":
            loss_adv = (feat_fake.float() - feat_real.detach().float()).pow(2).mean()
        else:
            loss_adv = _bce(logit_fake, 1.0)
        loss_con = (x_hat.float() - xb).abs().mean()
        loss_enc = (z.float() - z_hat.float()).pow(2).mean()
        loss_g = cfg.w_adv * loss_adv + cfg.w_con * loss_con + cfg.w_enc * loss_enc
        loss_d = 0.5 * (_bce(logit_real, 1.0) + _bce(logit_fake, 0.0))
        # Each loss differentiated only w.r.t. its own player's parameters: no wasted D weight gradients
        # for the G loss, and the D loss never reaches G through x_hat.
        grads_g = torch.autograd.grad(loss_g, g_params, retain_graph=True)
        grads_d = torch.autograd.grad(loss_d, d_params)
        for p, g in zip(g_params, grads_g, strict=True):
            p.grad = g
        for p, g in zip(d_params, grads_d, strict=True):
            p.grad = g
        opt_g.step()
        opt_d.step()
        return torch.stack([loss_d, loss_g, loss_adv, loss_con, loss_enc]).detach()

    def _reinit_d(self, opt_d: torch.optim.Optimizer) -> None:
        """Re-initialise D's weights and forget its Adam moments (the old ones belong to a dead D)."""
        assert self.D is not None
        self._init_weights(self.D)
        opt_d.state.clear()
        self.d_reinits += 1

    def _reconstruct(self, xb: torch.Tensor) -> torch.Tensor:
        """E(GD(GE(x))) for a batch (B, ...) in the training memory format; returns (B, latent_dim)."""
        GE, GD, E, _ = self._nets()
        return E(GD(GE(xb.contiguous(memory_format=self._memory_format()))))

    # ----- scoring -----
    def _latent_distance(self, xb: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B,) mean squared distance between GE(x) and E(GD(GE(x)))."""
        GE, GD, E, _ = self._nets()
        xb = xb.contiguous(memory_format=self._memory_format())
        z = GE(xb)
        return (z - E(GD(z))).pow(2).mean(dim=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores (N,) float64 for ``x`` of the fitted shape; higher = more anomalous.

        Computed in float32 in eval mode, so each score depends only on its own sample.
        """
        xs = self.check_input(x)
        nets = self._nets()
        was_training = [net.training for net in nets]
        self._set_mode(False)
        try:
            return gc.score_batched(self._latent_distance, xs, self.device)
        finally:
            for net, mode in zip(nets, was_training, strict=True):
                net.train(mode)

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        GE, GD, E, D = self._nets()
        return {
            "GE": GE.state_dict(), "GD": GD.state_dict(), "E": E.state_dict(), "D": D.state_dict(),
            "d_reinits": self.d_reinits,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self._build()
        for key, net in zip(("GE", "GD", "E", "D"), self._nets(), strict=True):
            net.load_state_dict(state[key])
        self.d_reinits = int(state.get("d_reinits", 0))
        self._set_mode(False)
