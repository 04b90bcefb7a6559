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
``latent_dim`` dimensions, networks in eval mode (computed in float32, returned as float64): the original
code's, where the paper writes the L1 norm ``||GE(x) - E(G(x))||_1`` (the two can rank samples
differently). No per-batch or per-set normalisation (the original code min-max normalises per test set,
making scores depend on what else is scored).

Speed: one training step runs G once and D once on x and once on x_hat. Both losses come from that one
forward: the generator gradient is taken w.r.t. G's parameters only and the discriminator gradient
w.r.t. D's only (``torch.autograd.grad``), which is exactly the original sequential G-then-D update
(the original D step reuses the pre-update x_hat and D's parameters are unchanged by the G step) with
two of its four D passes and the D weight gradients of the G step removed. Images run in channels_last
memory format (faster oneDNN convolutions on CPU, same results up to rounding), and the networks'
whole-map layers run as matrix products (``nets.WholeMapConv2d``).
``bf16=True`` runs the forward passes under bf16 autocast: a win on GPUs and AVX-512/AMX CPUs, a large
loss on AVX2-only CPUs (a warning says so). Measurements: ``benchmarks/README.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from adgan.models.base import register_detector
from adgan.models.gan import GANConfig, GANDetector, recalibrate_batchnorm
from adgan.models.nets import ImageDecoder, ImageEncoder, MLPDiscriminator, bce, dcgan_init, mlp

# D's loss below this means it separates real from fake perfectly; the original code then re-inits D.
D_COLLAPSE = 1e-5
NETS = ("GE", "GD", "E", "D")


@dataclasses.dataclass
class GanomalyConfig(GANConfig):
    """GANomaly hyperparameters: the shared GAN ones (``GANConfig``) plus the three loss weights.

    Attributes:
        latent_dim: Size of z (default 100 for every input kind).
        base_filters: Images: channels of the first convolution. Tabular: hidden width of the MLPs.
        w_adv: Weight of the adversarial term.
        w_con: Weight of the L1 reconstruction term.
        w_enc: Weight of the latent (encoder) L2 term.
        loss_case: ``"fm"`` (feature matching) or ``"bce"`` adversarial term.
    """

    latent_dim: int = 100
    w_adv: float = 1.0
    w_con: float = 50.0
    w_enc: float = 1.0
    loss_case: str = "fm"


@register_detector
class Ganomaly(GANDetector[GanomalyConfig]):
    """GANomaly detector; see the module docstring for losses, score and speed notes."""

    name: ClassVar[str] = "ganomaly"
    preferred_image_size: ClassVar[int] = 32
    auto_latent: ClassVar[dict[str, int]] = {"image": 100, "tabular": 100}
    loss_cases: ClassVar[tuple[str, ...]] = ("fm", "bce")
    d_reinits: int = 0  # discriminator re-initialisations of the fit (state)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Small, fast hyperparameters for tests (still learns the synthetic test cases)."""
        return {"base_filters": 8, "latent_dim": 16, "batch_size": 32, "epochs": 2, "lr": 2e-3}

    # ----- networks -----
    def build_networks(self) -> dict[str, nn.Module]:
        """GE, GD, E and D for ``self.input_shape``; images in channels_last."""
        assert self.input_shape is not None
        cfg, latent = self.config, self.latent_size()
        if self.is_image:
            shape = self.input_shape
            nets: dict[str, nn.Module] = {
                "GE": ImageEncoder(shape, latent, cfg.base_filters),
                "GD": ImageDecoder(latent, shape, cfg.base_filters),
                "E": ImageEncoder(shape, latent, cfg.base_filters),
                "D": ImageEncoder(shape, 1, cfg.base_filters),
            }
        else:
            (dim,) = self.input_shape
            hid = cfg.base_filters
            # Batch norm in the hidden layer, as in the image networks: without it the latent score of
            # small tabular networks is much weaker (AUROC ~0.8 vs ~0.98 on the contract test's data).
            nets = {
                "GE": mlp([dim, hid, latent], batch_norm=True),
                "GD": mlp([latent, hid, dim], batch_norm=True),
                "E": mlp([dim, hid, latent], batch_norm=True),
                "D": MLPDiscriminator(dim, [hid]),
            }
        for net in nets.values():
            self._init_weights(net)
            net.to(memory_format=self._memory_format())
        return nets

    def _init_weights(self, net: nn.Module) -> None:
        """DCGAN initialisation for image networks; PyTorch's default (Kaiming-uniform) for the MLPs,
        where N(0, 0.02) weights shrink the signal so much that the tabular networks barely train."""
        if self.is_image:
            net.apply(dcgan_init)
        else:
            for mod in net.modules():
                if isinstance(mod, nn.Linear):
                    mod.reset_parameters()

    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.is_image else torch.contiguous_format

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        nets = self.networks()
        self._g_params = [p for key in ("GE", "GD", "E") for p in nets[key].parameters()]
        self._d_params = list(nets["D"].parameters())
        return {"g": self.adam(self._g_params), "d": self.adam(self._d_params)}

    def start_fit(self, data: torch.Tensor, gen: torch.Generator) -> None:
        self.d_reinits = 0

    # ----- training -----
    def train_step(self, xb: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One simultaneous G and D update on ``xb`` (B, ...); returns the five losses."""
        cfg = self.config
        GE, GD, E, D = (self.nets[k] for k in NETS)
        xb = xb.contiguous(memory_format=self._memory_format())
        with self.autocast():
            z = GE(xb)
            x_hat = GD(z)
            z_hat = E(x_hat)
            feat_real, logit_real = D.forward_features(xb)
            feat_fake, logit_fake = D.forward_features(x_hat)
        # Losses in float32 whatever the autocast dtype.
        if cfg.loss_case == "fm":
            loss_adv = (feat_fake.float() - feat_real.detach().float()).pow(2).mean()
        else:
            loss_adv = bce(logit_fake, True)
        loss_con = (x_hat.float() - xb).abs().mean()
        loss_enc = (z.float() - z_hat.float()).pow(2).mean()
        loss_g = cfg.w_adv * loss_adv + cfg.w_con * loss_con + cfg.w_enc * loss_enc
        loss_d = 0.5 * (bce(logit_real, True) + bce(logit_fake, False))
        # Each loss differentiated only w.r.t. its own player's parameters: no wasted D weight gradients
        # for the G loss, and the D loss never reaches G through x_hat.
        grads_g = torch.autograd.grad(loss_g, self._g_params, retain_graph=True)
        grads_d = torch.autograd.grad(loss_d, self._d_params)
        for p, g in zip(self._g_params, grads_g, strict=True):
            p.grad = g
        for p, g in zip(self._d_params, grads_d, strict=True):
            p.grad = g
        self.optimizers["g"].step()
        self.optimizers["d"].step()
        # One host sync per step, needed for the collapse test as in the original code.
        if loss_d.item() < D_COLLAPSE:
            self._reinit_d()
        return {"loss_d": loss_d, "loss_g": loss_g, "loss_adv": loss_adv, "loss_con": loss_con,
                "loss_enc": loss_enc}

    def _reinit_d(self) -> None:
        """Re-initialise D's weights and forget its Adam moments (the old ones belong to a dead D)."""
        self._init_weights(self.nets["D"])
        self.optimizers["d"].state.clear()
        self.d_reinits += 1

    def end_epoch(self, data: torch.Tensor, gen: torch.Generator) -> None:
        # Scoring uses GE, GD and E in eval mode: give them running statistics of the current weights.
        # 1024 samples: enough for stable statistics; costs ~5% of an epoch of 4000 samples.
        GE, GD, E = (self.nets[k] for k in ("GE", "GD", "E"))
        recalibrate_batchnorm(self._reconstruct, [GE, GD, E], data, self.config.batch_size, gen, 1024)

    def _reconstruct(self, xb: torch.Tensor) -> torch.Tensor:
        """E(GD(GE(x))) for a batch (B, ...) in the training memory format; returns (B, latent_dim)."""
        GE, GD, E = (self.nets[k] for k in ("GE", "GD", "E"))
        return E(GD(GE(xb.contiguous(memory_format=self._memory_format()))))

    # ----- scoring -----
    def score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B,) mean squared distance between GE(x) and E(GD(GE(x))), in float32."""
        GE, GD, E = (self.nets[k] for k in ("GE", "GD", "E"))
        z = GE(xb.contiguous(memory_format=self._memory_format()))
        return (z - E(GD(z))).pow(2).mean(dim=1)

    # ----- persistence -----
    def extra_state(self) -> dict[str, Any]:
        return {"d_reinits": self.d_reinits}

    def load_extra_state(self, state: Any) -> None:
        self.d_reinits = int(state.get("d_reinits", 0))
