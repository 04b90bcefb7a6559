"""AnoGAN (Schlegl et al. 2017): a DCGAN trained on normal data, scored by a latent search.

Training is a plain DCGAN with the non-saturating BCE losses. To score x, AnoGAN looks for the latent
z whose image G(z) best explains x: ``gamma_steps`` Adam steps minimising
``(1 - lam) * L_R + lam * L_D`` with ``L_R = ||x - G(z)||_1`` and L_D chosen by the loss case:
``fm`` (Schlegl's discrimination loss, ``||f(x) - f(G(z))||_1`` over D's intermediate features) or
``bce`` (cross-entropy of D(G(z)) against "real", ``softplus(-logit)``). The score is that loss at
the z found.

Batched search: every input gets its own z and all are optimised together by one Adam on the
(N, latent) tensor. With the networks in eval mode each sample's loss depends on its own z only, the
summed loss gives each z exactly its own gradient, and Adam's update is elementwise, so the batched
search computes the same z as searching one input at a time, far faster (``benchmarks/anogan_search.py``).

Initialisation of the search: one fixed vector z0, drawn from N(0, I) with the fit seed and saved in the
state, starts the search of every input. This keeps ``score(x)[i] == score(x[i:i+1])[0]`` whatever the
batch, and a saved detector scores exactly as it did before saving.

Search step size: ``search_lr`` 0.001 (Adam). A longer or bolder search lets G explain anomalies too: on
mnist-5k (digit 2 anomalous, 2 epochs) validation AUROC at Gamma 500 was 0.805 / 0.783 / 0.761 / 0.700 /
0.624 for search_lr 0.001 / 0.002 / 0.005 / 0.01 / 0.05.

Cost: every search step is a forward and an input-gradient backward pass of G and D, for every input.
The training loop scores the validation split after every epoch with the same ``gamma_steps``: on 2 CPU
cores (lightly shared) a 460-image mnist-5k validation split takes about 170-190 s at Gamma 500 (default
networks), about three times a training epoch on its 3,240 images. Lower ``gamma_steps`` (e.g. 50: ~15-35 s)
for sweeps, where the search cost otherwise dominates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adgan.models import gan_common as gc
from adgan.models.base import Detector, DetectorConfig, register_detector
from adgan.models.egbad import FeatureScale, fit_scales
from adgan.models.nets import ImageDecoder, ImageEncoder, dcgan_init, mlp


@dataclasses.dataclass
class AnoGANConfig(DetectorConfig):
    """AnoGAN hyperparameters.

    Attributes:
        lr: Adam learning rate of G and D.
        beta1: Adam beta1 for training.
        epochs: Training epochs.
        batch_size: Training minibatch size.
        latent_dim: Latent size; 0 = auto (100 for images, 32 for tabular data).
        base_filters: Width of the networks (image: first conv channels; tabular: hidden width).
        lam: Weight of L_D in the search loss and the score.
        gamma_steps: Latent-search steps per input (Gamma).
        search_lr: Adam learning rate of the latent search.
        search_batch_size: Inputs searched together; only memory and speed depend on it, not the scores.
        tabular_norm: Tabular input: standardise x inside the networks with the training mean/std
            (``FeatureScale``); generated samples and scores stay in the input's raw units.
    """

    loss_case: str = "fm"
    lr: float = 2e-4
    beta1: float = 0.5
    epochs: int = 15
    batch_size: int = 64
    latent_dim: int = 0
    base_filters: int = 64
    lam: float = 0.1
    gamma_steps: int = 500
    search_lr: float = 0.001
    search_batch_size: int = 1024
    tabular_norm: bool = True


class Critic(nn.Module):
    """DCGAN discriminator x -> (features (N, F), logit (N,))."""

    def __init__(self, input_shape: tuple[int, ...], base_filters: int) -> None:
        super().__init__()
        self.image = len(input_shape) == 3
        if self.image:
            self.net: nn.Module = ImageEncoder(input_shape, 1, base_filters)
        else:
            w = base_filters
            self.net = mlp([input_shape[0], 2 * w, w], final=nn.LeakyReLU(0.2))
            self.head = nn.Linear(w, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image:
            f, out = self.net.forward_features(x)  # type: ignore[operator]
            return f.flatten(1), out.squeeze(1)
        f = self.net(x)
        return f, self.head(f).squeeze(1)


def build_nets(
    input_shape: tuple[int, ...], latent_dim: int, base_filters: int, tabular_norm: bool = True
) -> tuple[nn.Module, Critic]:
    """Generator (z -> x) and discriminator for ``input_shape``, DCGAN-initialised.

    With ``tabular_norm`` (tabular input only) D standardises x and G de-standardises its output
    (``FeatureScale``, as in EGBAD); call ``fit_scales`` with the training data.
    """
    if len(input_shape) == 3:
        gen: nn.Module = ImageDecoder(latent_dim, input_shape, base_filters)
        disc = Critic(input_shape, base_filters)
    else:
        w = base_filters
        gen = mlp([latent_dim, w, 2 * w, input_shape[0]], slope=0.0)  # linear output: unscaled features
        disc = Critic(input_shape, base_filters)
        if tabular_norm:
            gen = nn.Sequential(gen, FeatureScale(input_shape[0], inverse=True))
            disc.net = nn.Sequential(FeatureScale(input_shape[0]), disc.net)
    gen.apply(dcgan_init)
    disc.apply(dcgan_init)
    return gen, disc


def bce(logit: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, float(real)))


@register_detector
class AnoGAN(Detector):
    """AnoGAN anomaly detector; see the module docstring."""

    name: ClassVar[str] = "anogan"
    Config: ClassVar[type[DetectorConfig]] = AnoGANConfig
    loss_cases: ClassVar[tuple[str, ...]] = ("fm", "bce")
    preferred_image_size: ClassVar[int] = 28
    config: AnoGANConfig

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.gen: nn.Module | None = None
        self.disc: Critic | None = None
        self.z0: torch.Tensor | None = None

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Fast hyperparameters for tests."""
        return {"base_filters": 8, "latent_dim": 16, "epochs": 2, "batch_size": 32, "lr": 1e-3,
                "gamma_steps": 10, "search_lr": 0.05}  # few search steps: larger ones

    def latent_size(self) -> int:
        """The latent size in use (``latent_dim`` or its auto value for the fitted input)."""
        if self.config.latent_dim > 0:
            return self.config.latent_dim
        assert self.input_shape is not None
        return 100 if len(self.input_shape) == 3 else 32

    def _build(self) -> None:
        assert self.input_shape is not None
        cfg = self.config
        gen, disc = build_nets(self.input_shape, self.latent_size(), cfg.base_filters, cfg.tabular_norm)
        self.gen, self.disc = gen.to(self.device), disc.to(self.device)

    def fit_epochs(
        self,
        x: np.ndarray,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        resume: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, float]]:
        """Train the DCGAN on normal samples ``x`` ((N, C, H, W) or (N, D)); yields mean losses per epoch.

        Raises:
            DivergedError: A loss became NaN or infinite.
        """
        self._set_input(x, device, bf16)
        cfg = self.config
        rng = gc.seed_everything(seed)
        if resume is None:
            self._build()
        else:
            self.load_state(resume["state"])  # networks and the search's start z0
        gen, disc = self.gen, self.disc
        assert gen is not None and disc is not None
        latent = self.latent_size()
        if resume is None:
            self.z0 = torch.randn(1, latent, generator=rng).to(self.device)
        opt_d = gc.adam(disc.parameters(), cfg.lr, cfg.beta1)
        opt_g = gc.adam(gen.parameters(), cfg.lr, cfg.beta1)
        data = gc.to_tensor(self.check_input(x), self.device)
        n = data.shape[0]
        if data.ndim == 2 and resume is None:
            fit_scales(data, gen, disc)
        bs = min(cfg.batch_size, n)
        start = self._resume(resume, {"d": opt_d, "g": opt_g}, rng) if resume is not None else 0
        for epoch in range(start, cfg.epochs):
            gen.train()  # score() between epochs leaves the networks in eval mode
            disc.train()
            sums: dict[str, Any] = {"d": 0.0, "g": 0.0}  # running sums (0-d tensors on the device)
            steps = 0
            for idx in gc.minibatches(n, bs, rng):
                xb = data[idx]
                z = torch.randn(xb.shape[0], latent, generator=rng).to(self.device)
                with gc.autocast(self.device, self.bf16):
                    x_gen = gen(z)
                    loss_d = bce(disc(xb)[1].float(), True) + bce(disc(x_gen.detach())[1].float(), False)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                disc.requires_grad_(False)  # only G's gradients are needed for its step
                with gc.autocast(self.device, self.bf16):
                    loss_g = bce(disc(x_gen)[1].float(), True)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                disc.requires_grad_(True)
                # Summed on the device: a .item() per step would stall a GPU's queue.
                sums["d"] = sums["d"] + loss_d.detach().double()
                sums["g"] = sums["g"] + loss_g.detach().double()
                steps += 1
            means = {k: float(v) / max(steps, 1) for k, v in sums.items()}
            gc.check_finite(self.name, epoch, means)
            self._track(epoch + 1, {"d": opt_d, "g": opt_g}, rng)
            yield means

    # ----- the latent search -----
    def _search_loss(self, x: torch.Tensor, z: torch.Tensor, f_x: torch.Tensor | None) -> torch.Tensor:
        """Per-sample loss (N,) ``(1 - lam) * ||x - G(z)||_1 + lam * L_D``; ``f_x`` = D's features of x."""
        assert self.gen is not None and self.disc is not None
        with gc.autocast(self.device, self.bf16):
            x_gen = self.gen(z)
            f_gen, logit = self.disc(x_gen)
        l_r = (x - x_gen.float()).abs().flatten(1).sum(1)
        # fm: L1 between D's features; bce: cross-entropy of D(G(z)) against "real".
        l_d = (f_x - f_gen.float()).abs().sum(1) if f_x is not None else F.softplus(-logit.float())
        lam = self.config.lam
        return (1.0 - lam) * l_r + lam * l_d

    def search(self, x: torch.Tensor, gamma_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent search for a batch ``x`` (N, ...) on the detector's device, all inputs at once.

        Networks must be in eval mode with frozen weights (``score`` arranges both).

        Returns:
            (losses (N,) at the found z, z (N, latent)).
        """
        assert self.gen is not None and self.disc is not None and self.z0 is not None
        steps = self.config.gamma_steps if gamma_steps is None else gamma_steps
        with torch.no_grad(), gc.autocast(self.device, self.bf16):
            f_x = self.disc(x)[0].float() if self.config.loss_case == "fm" else None
        z = self.z0.expand(x.shape[0], -1).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.config.search_lr)
        for _ in range(steps):
            # Summing keeps each z's gradient its own (a mean would scale it by 1/N and change Adam's eps).
            loss = self._search_loss(x, z, f_x).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            return self._search_loss(x, z, f_x), z.detach()

    def score(self, x: np.ndarray, gamma_steps: int | None = None) -> np.ndarray:
        """Anomaly scores (N,) float64 of ``x``: the search loss after ``gamma_steps`` (default: config).

        Inputs are searched ``search_batch_size`` at a time; the chunking does not change the scores.
        """
        x = self.check_input(x)
        if self.gen is None or self.disc is None:
            raise RuntimeError(f"{self.name}: networks are missing; fit() or load() first")
        nets = (self.gen, self.disc)
        for net in nets:
            net.eval()
            net.requires_grad_(False)  # the search differentiates with respect to z only
        try:
            out = []
            bs = max(1, self.config.search_batch_size)
            for i in range(0, x.shape[0], bs):
                losses, _ = self.search(gc.to_tensor(x[i : i + bs], self.device), gamma_steps)
                out.append(losses.float().cpu())
        finally:
            for net in nets:
                net.requires_grad_(True)
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def state(self) -> dict[str, Any]:
        assert self.gen is not None and self.disc is not None and self.z0 is not None
        return {"gen": self.gen.state_dict(), "disc": self.disc.state_dict(), "z0": self.z0.cpu()}

    def load_state(self, state: dict[str, Any]) -> None:
        self._build()
        assert self.gen is not None and self.disc is not None
        self.gen.load_state_dict(state["gen"])
        self.disc.load_state_dict(state["disc"])
        self.z0 = state["z0"].to(self.device)
