"""EGBAD / BiGAN (Zenati et al. 2018): encoder E, generator G and a joint discriminator D(x, z).

D tells real pairs (x, E(x)) from generated pairs (G(z), z). Once trained, G(E(x)) reconstructs normal
data well, and D's view of (x, E(x)) separates normal pairs from unusual ones.

Loss cases (the survey's Table 1), written ``"<train>[+res]-<score>"``:

- ``<train>``: how G and E are trained against D. ``bce``: G wants D(G(z), z) called real, E wants
  D(x, E(x)) called fake (the BiGAN game). ``fm``: feature matching, G and E both minimise the squared
  distance between the batch means of D's intermediate features of real and generated pairs.
- ``+res``: the residual loss ``mean |x - G(E(x))|`` (weight ``w_res``) is added to the encoder's loss
  only; G's weights receive no gradient from it, so G stays a pure GAN generator.
- ``<score>``: the discriminator term L_D of the anomaly score
  ``(1 - lam) * ||x - G(E(x))||_1 + lam * L_D``. ``bce``: cross-entropy of D(x, E(x)) against "real",
  ``softplus(-logit)``, as the paper defines it (the published code used D(G(E(x)), E(x))). ``fm``:
  ``||f(x, E(x)) - f(G(E(x)), E(x))||_1`` over D's intermediate features f.

Networks: DCGAN-style for 28x28/32x32 images (``adgan.models.nets``); for tabular data the MLPs of the
published KDD99 code (encoder D->64->32, generator 32->64->128->D, discriminator x->128 and z->128 joined
->128 with dropout 0.5), widths scaled by ``base_filters / 64``.

Tabular networks standardise x internally with the training mean/std (``FeatureScale``, option
``tabular_norm``); without it the DCGAN-initialised MLPs cannot follow KDD99's unscaled features (F1 ~0.2).

The default loss case is ``fm+res-bce``: on KDD99's validation split (``benchmarks/egbad_kdd.py
--all-cases``, 8 epochs; benchmarks/README.md) the ``fm+res`` cases lead, tied (AUPRC 0.996), then
``bce+res`` (0.986); without the residual the reconstruction G(E(x)) is still poor after a budget of
minutes and validation AUPRC stays near chance (0.80 against 0.71).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adgan.models.base import register_detector
from adgan.models.gan import GANConfig, GANDetector
from adgan.models.nets import FeatureScale, ImageDecoder, ImageEncoder, bce, dcgan_init, fit_scales, mlp

TRAIN_CASES = ("bce", "bce+res", "fm", "fm+res")
SCORE_CASES = ("bce", "fm")


@dataclasses.dataclass
class EGBADConfig(GANConfig):
    """EGBAD hyperparameters: the shared GAN ones (``GANConfig``) plus these.

    Attributes:
        latent_dim: Latent size; 0 = auto (200 for images as in the published MNIST code, 32 for tabular).
        base_filters: Width of the networks (image: first conv channels; tabular: 64 = published sizes).
        lam: Weight of L_D in the anomaly score.
        w_res: Weight of the residual loss in the encoder's loss (``+res`` cases only).
        tabular_norm: Tabular input: standardise x inside the networks with the training mean/std
            (``FeatureScale``); reconstructions and scores stay in the input's raw units.
    """

    loss_case: str = "fm+res-bce"
    lam: float = 0.1
    w_res: float = 1.0
    tabular_norm: bool = True


class JointDiscriminator(nn.Module):
    """BiGAN discriminator D(x, z) -> (features (N, F), logit (N,)).

    Args:
        input_shape: (C, H, W) for images or (D,) for tabular data.
        latent_dim: Size of z.
        base_filters: Width; for images the x trunk is an ``ImageEncoder`` with this many first filters.
    """

    def __init__(self, input_shape: tuple[int, ...], latent_dim: int, base_filters: int) -> None:
        super().__init__()
        if len(input_shape) == 3:
            hidden = 8 * base_filters  # the published MNIST code: z -> 512, joint 1024
            self.x_net: nn.Module = nn.Sequential(ImageEncoder(input_shape, hidden, base_filters),
                                                  nn.LeakyReLU(0.2))
            slope = 0.2
            self.z_net = mlp([latent_dim, hidden], final=nn.LeakyReLU(slope))
        else:
            # The published KDD code: x -> 128 with batch norm, z -> 128 with dropout, joined -> 128.
            hidden = 2 * base_filters
            slope = 0.1
            self.x_net = nn.Sequential(nn.Linear(input_shape[0], hidden), nn.BatchNorm1d(hidden),
                                       nn.LeakyReLU(slope))
            self.z_net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(slope), nn.Dropout(0.5))
        joint = 2 * hidden if len(input_shape) == 3 else hidden
        self.joint = nn.Sequential(nn.Linear(2 * hidden, joint), nn.LeakyReLU(slope), nn.Dropout(0.5))
        self.logit = nn.Linear(joint, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.joint(torch.cat([self.x_net(x), self.z_net(z)], dim=1))
        return f, self.logit(f).squeeze(1)


def build_nets(
    input_shape: tuple[int, ...], latent_dim: int, base_filters: int, tabular_norm: bool = True
) -> tuple[nn.Module, nn.Module, JointDiscriminator]:
    """Encoder (x -> z), generator (z -> x) and joint discriminator for ``input_shape``.

    With ``tabular_norm`` (tabular input only) the encoder and D standardise x and G de-standardises its
    output through ``FeatureScale`` modules; call ``fit_scales`` with the training data.
    """
    if len(input_shape) == 3:
        enc: nn.Module = ImageEncoder(input_shape, latent_dim, base_filters)
        gen: nn.Module = ImageDecoder(latent_dim, input_shape, base_filters)
        disc = JointDiscriminator(input_shape, latent_dim, base_filters)
    else:
        d, w = input_shape[0], base_filters
        enc = mlp([d, w, latent_dim], slope=0.1)
        gen = mlp([latent_dim, w, 2 * w, d], slope=0.0)  # linear output: KDD features are unscaled
        disc = JointDiscriminator(input_shape, latent_dim, base_filters)
        if tabular_norm:
            enc = nn.Sequential(FeatureScale(d), enc)
            gen = nn.Sequential(gen, FeatureScale(d, inverse=True))
            disc.x_net = nn.Sequential(FeatureScale(d), disc.x_net)
    for net in (enc, gen, disc):
        net.apply(dcgan_init)
    return enc, gen, disc


def parse_case(loss_case: str) -> tuple[str, bool, str]:
    """``"fm+res-bce"`` -> (train adversarial loss "fm", residual True, score L_D "bce")."""
    train, score = loss_case.rsplit("-", 1)
    return train.split("+")[0], train.endswith("+res"), score


def generator_encoder_losses(
    enc: nn.Module, gen: nn.Module, disc: JointDiscriminator, x: torch.Tensor, z: torch.Tensor,
    adversarial: str, residual: bool,
) -> dict[str, torch.Tensor]:
    """The losses G and E minimise on one batch.

    Args:
        x: Real batch (N, ...). z: Prior samples (N, latent_dim).
        adversarial: "bce" or "fm". residual: Add the residual loss term ``res``.

    Returns:
        ``g`` (gradients only into G), ``e`` (only into E) or, for "fm", ``ge`` (into both), plus ``res``
        (only into E: computed with G's weights frozen).
    """
    z_enc = enc(x)
    x_gen = gen(z)
    f_real, logit_real = disc(x, z_enc)
    f_fake, logit_fake = disc(x_gen, z)
    if adversarial == "bce":
        losses = {"g": bce(logit_fake, True), "e": bce(logit_real, False)}
    else:
        losses = {"ge": (f_real.mean(0) - f_fake.mean(0)).pow(2).mean()}
    if residual:
        gen.requires_grad_(False)  # the residual trains the encoder, through G, not G itself
        try:
            losses["res"] = (x - gen(z_enc)).abs().mean()
        finally:
            gen.requires_grad_(True)
    return losses


@register_detector
class EGBAD(GANDetector[EGBADConfig]):
    """EGBAD / BiGAN anomaly detector (28x28 networks); see the module docstring for the loss cases."""

    name: ClassVar[str] = "egbad"
    loss_cases: ClassVar[tuple[str, ...]] = tuple(
        f"{t}-{s}" for t in ("fm+res", "bce+res", "fm", "bce") for s in SCORE_CASES
    )
    auto_latent: ClassVar[dict[str, int]] = {"image": 200, "tabular": 32}

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Fast hyperparameters for tests."""
        return {"base_filters": 8, "latent_dim": 16, "epochs": 2, "batch_size": 32, "lr": 1e-3}

    def build_networks(self) -> dict[str, nn.Module]:
        assert self.input_shape is not None
        cfg = self.config
        enc, gen, disc = build_nets(self.input_shape, self.latent_size(), cfg.base_filters, cfg.tabular_norm)
        return {"enc": enc, "gen": gen, "disc": disc}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        enc, gen, disc = (self.nets[k] for k in ("enc", "gen", "disc"))
        return {"d": self.adam(disc.parameters()), "ge": self.adam([*enc.parameters(), *gen.parameters()])}

    def start_fit(self, data: torch.Tensor, gen: torch.Generator) -> None:
        if data.ndim == 2:
            fit_scales(data, *self.nets.values())

    def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One discriminator update on (x, E(x)) vs (G(z), z), then one joint G/E update."""
        enc, g_net, disc = (self.nets[k] for k in ("enc", "gen", "disc"))
        adversarial, residual, _ = parse_case(self.config.loss_case)
        z = torch.randn(xb.shape[0], self.latent_size(), generator=gen).to(self.device)
        with self.autocast():
            with torch.no_grad():
                z_enc, x_gen = enc(xb), g_net(z)
            _, logit_real = disc(xb, z_enc)
            _, logit_fake = disc(x_gen, z)
            loss_d = bce(logit_real, True) + bce(logit_fake, False)
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        disc.requires_grad_(False)  # D's weight gradients are not needed for the G/E step
        with self.autocast():
            losses = generator_encoder_losses(enc, g_net, disc, xb, z, adversarial, residual)
        total = sum(v.float() * (self.config.w_res if k == "res" else 1.0) for k, v in losses.items())
        self.optimizers["ge"].zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        self.optimizers["ge"].step()
        disc.requires_grad_(True)
        return {"d": loss_d, **losses}

    def score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Per-sample score (B,) ``(1 - lam) * ||x - G(E(x))||_1 + lam * L_D``; networks in eval mode."""
        enc, gen, disc = (self.nets[k] for k in ("enc", "gen", "disc"))
        _, _, score_case = parse_case(self.config.loss_case)
        with self.autocast():
            z = enc(xb)
            x_rec = gen(z)
            f_real, logit_real = disc(xb, z)
            if score_case == "fm":
                f_rec, _ = disc(x_rec, z)
                l_d = (f_real.float() - f_rec.float()).abs().sum(1)
            else:
                l_d = F.softplus(-logit_real.float())  # BCE against "real"
        l_r = (xb - x_rec.float()).abs().flatten(1).sum(1)
        lam = self.config.lam
        return (1.0 - lam) * l_r + lam * l_d
