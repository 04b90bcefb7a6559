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
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adgan.models.base import register_detector
from adgan.models.gan import GANConfig, GANDetector, to_tensor
from adgan.models.nets import FeatureScale, ImageDecoder, ImageEncoder, bce, dcgan_init, fit_scales, mlp


@dataclasses.dataclass
class AnoGANConfig(GANConfig):
    """AnoGAN hyperparameters: the shared GAN ones (``GANConfig``) plus these.

    Attributes:
        latent_dim: Latent size; 0 = auto (100 for images, 32 for tabular data).
        lam: Weight of L_D in the search loss and the score.
        gamma_steps: Latent-search steps per input (Gamma).
        search_lr: Adam learning rate of the latent search.
        search_batch_size: Inputs searched together; only memory and speed depend on it, not the scores.
        tabular_norm: Tabular input: standardise x inside the networks with the training mean/std
            (``FeatureScale``); generated samples and scores stay in the input's raw units.
    """

    loss_case: str = "fm"
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


@register_detector
class AnoGAN(GANDetector[AnoGANConfig]):
    """AnoGAN anomaly detector (28x28 networks, the default image size); see the module docstring."""

    name: ClassVar[str] = "anogan"
    loss_cases: ClassVar[tuple[str, ...]] = ("fm", "bce")
    z0: torch.Tensor | None = None  # the search's start, drawn at fit (state)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Fast hyperparameters for tests."""
        return {"base_filters": 8, "latent_dim": 16, "epochs": 2, "batch_size": 32, "lr": 1e-3,
                "gamma_steps": 10, "search_lr": 0.05}  # few search steps: larger ones

    def build_networks(self) -> dict[str, nn.Module]:
        assert self.input_shape is not None
        cfg = self.config
        gen, disc = build_nets(self.input_shape, self.latent_size(), cfg.base_filters, cfg.tabular_norm)
        return {"gen": gen, "disc": disc}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"d": self.adam(self.nets["disc"].parameters()), "g": self.adam(self.nets["gen"].parameters())}

    def start_fit(self, data: torch.Tensor, gen: torch.Generator) -> None:
        # One fixed start for every input's search, drawn with the fit seed (see the module docstring).
        self.z0 = torch.randn(1, self.latent_size(), generator=gen).to(self.device)
        if data.ndim == 2:
            fit_scales(data, *self.nets.values())

    def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One DCGAN step with the non-saturating BCE losses: D on real vs G(z), then G."""
        g_net, disc = self.nets["gen"], self.nets["disc"]
        z = torch.randn(xb.shape[0], self.latent_size(), generator=gen).to(self.device)
        with self.autocast():
            x_gen = g_net(z)
            loss_d = bce(disc(xb)[1], True) + bce(disc(x_gen.detach())[1], False)
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        disc.requires_grad_(False)  # only G's gradients are needed for its step
        with self.autocast():
            loss_g = bce(disc(x_gen)[1], True)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["g"].step()
        disc.requires_grad_(True)
        return {"d": loss_d, "g": loss_g}

    # ----- the latent search -----
    def _search_loss(self, x: torch.Tensor, z: torch.Tensor, f_x: torch.Tensor | None) -> torch.Tensor:
        """Per-sample loss (N,) ``(1 - lam) * ||x - G(z)||_1 + lam * L_D``; ``f_x`` = D's features of x."""
        with self.autocast():
            x_gen = self.nets["gen"](z)
            f_gen, logit = self.nets["disc"](x_gen)
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
        assert self.z0 is not None
        steps = self.config.gamma_steps if gamma_steps is None else gamma_steps
        with torch.no_grad(), self.autocast():
            f_x = self.nets["disc"](x)[0].float() if self.config.loss_case == "fm" else None
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
        xs = self.check_input(x)
        nets = list(self.networks().values())
        with self.eval_mode():
            for net in nets:
                net.requires_grad_(False)  # the search differentiates with respect to z only
            try:
                out = []
                bs = max(1, self.config.search_batch_size)
                for i in range(0, xs.shape[0], bs):
                    losses, _ = self.search(to_tensor(xs[i : i + bs], self.device), gamma_steps)
                    out.append(losses.float().cpu())
            finally:
                for net in nets:
                    net.requires_grad_(True)
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    # ----- persistence -----
    def extra_state(self) -> dict[str, Any]:
        assert self.z0 is not None
        return {"z0": self.z0.cpu()}

    def load_extra_state(self, state: Any) -> None:
        self.z0 = state["z0"].to(self.device)
