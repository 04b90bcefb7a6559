"""Network building blocks shared by the GAN detectors.

Image networks are DCGAN-style and mirror each other: the encoder halves the side with 4x4 stride-2
convolutions down to 7 (28x28 input) or 4 (32x32 input) and a last convolution covering the whole map
produces the output vector; the decoder runs the same ladder backwards. Tabular networks are MLPs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adgan.errors import DataError


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` (any shape) against an all-real or all-fake target, in
    float32 whatever the autocast dtype of the logits."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


def side_ladder(side: int) -> list[int]:
    """Feature-map sides from the input down: 28 -> [28, 14, 7], 32 -> [32, 16, 8, 4]."""
    if side not in (28, 32):
        raise DataError(f"image networks support 28x28 and 32x32 inputs, got side {side}")
    sides = [side]
    while sides[-1] > 7 and sides[-1] % 2 == 0:
        sides.append(sides[-1] // 2)
    return sides


class WholeMapConv2d(nn.Conv2d):
    """A convolution whose kernel covers its whole input map (k x k -> 1 x 1), run as one matrix product.

    Same parameters and results as ``nn.Conv2d`` (padding 0), but oneDNN runs this shape as a convolution
    several times slower than the equivalent ``linear`` (measured about 5x on a 2-core AVX2 CPU).
    Other input sizes fall back to the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.kernel_size or self.padding != (0, 0) or self.groups != 1:
            return super().forward(x)
        n = x.shape[0]
        # (N, H, W, C) order: a free view of channels_last tensors (weights and activations).
        rows = x.permute(0, 2, 3, 1).reshape(n, -1)
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        return F.linear(rows, weight, self.bias).reshape(n, self.out_channels, 1, 1)


class WholeMapConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution from a 1 x 1 input to a k x k map, run as one matrix product.

    Same parameters and results as ``nn.ConvTranspose2d`` (padding 0); the output has channels_last
    strides. Other input sizes fall back to the transposed convolution.
    """

    def forward(self, z: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = self.padding == (0, 0) and self.output_padding == (0, 0) and self.dilation == (1, 1)
        if tuple(z.shape[-2:]) != (1, 1) or output_size is not None or not plain or self.groups != 1:
            return super().forward(z, output_size)
        n = z.shape[0]
        kh, kw = self.kernel_size
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.in_channels, -1)  # (in, kh * kw * out)
        out = (z.reshape(n, -1) @ weight).reshape(n, kh, kw, self.out_channels).permute(0, 3, 1, 2)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class ImageEncoder(nn.Module):
    """DCGAN encoder: (N, C, H, W) -> (N, out_dim); also the trunk of image discriminators.

    Args:
        in_shape: (C, H, W) with H == W in {28, 32}.
        out_dim: Size of the output vector (latent size, or 1 for a discriminator logit).
        base_filters: Channels of the first convolution; doubled at each halving.
    """

    def __init__(self, in_shape: Sequence[int], out_dim: int, base_filters: int = 64) -> None:
        super().__init__()
        c, h, w = in_shape
        if h != w:
            raise DataError(f"image networks need square images, got {h}x{w}")
        sides = side_ladder(h)
        layers: list[nn.Module] = [nn.Conv2d(c, base_filters, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        ch = base_filters
        for _ in sides[2:]:
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)
            ]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.feature_channels = ch
        self.head = WholeMapConv2d(ch, out_dim, sides[-1], 1, 0, bias=False)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features (N, F, s, s), output (N, out_dim))."""
        f = self.features(x)
        return f, self.head(f).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


class ImageDecoder(nn.Module):
    """DCGAN generator: (N, latent_dim) -> (N, C, H, W) in [-1, 1] (tanh).

    Args:
        latent_dim: Size of the input vector.
        out_shape: (C, H, W) with H == W in {28, 32}.
        base_filters: Channels before the last transposed convolution.
    """

    def __init__(self, latent_dim: int, out_shape: Sequence[int], base_filters: int = 64) -> None:
        super().__init__()
        c, h, w = out_shape
        if h != w:
            raise DataError(f"image networks need square images, got {h}x{w}")
        sides = side_ladder(h)
        n_up = len(sides) - 1
        ch = base_filters * 2 ** (n_up - 1)
        layers: list[nn.Module] = [
            WholeMapConvTranspose2d(latent_dim, ch, sides[-1], 1, 0, bias=False), nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(n_up - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, c, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], -1, 1, 1))


def mlp(
    sizes: Sequence[int],
    *,
    slope: float = 0.2,
    batch_norm: bool = False,
    dropout: float = 0.0,
    final: nn.Module | None = None,
) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with LeakyReLU between them.

    Args:
        sizes: Layer widths including input and output.
        slope: LeakyReLU negative slope (0 gives ReLU).
        batch_norm: BatchNorm1d after hidden linear layers.
        dropout: Dropout after hidden activations.
        final: Optional module after the last linear layer (e.g. ``nn.Tanh()``).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.LeakyReLU(slope, True) if slope > 0 else nn.ReLU(True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation (N(0, 0.02) weights, N(1, 0.02) batch-norm scales); use with ``.apply``."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class MLPDiscriminator(nn.Module):
    """Tabular discriminator exposing its last hidden layer: (N, D) -> features (N, H), logit (N, 1).

    Mirrors ``ImageEncoder.forward_features`` so detectors can use feature matching on either kind.

    Args:
        in_dim: Number of input features D.
        hidden: Widths of the hidden layers; the last one is the feature layer.
        slope: LeakyReLU negative slope.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], slope: float = 0.2) -> None:
        super().__init__()
        # mlp() leaves the last layer linear; the feature layer needs its activation too.
        self.features = nn.Sequential(mlp([in_dim, *hidden], slope=slope), nn.LeakyReLU(slope, True))
        self.head = nn.Linear(hidden[-1], 1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features (N, H), logit (N, 1))."""
        f = self.features(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


class FeatureScale(nn.Module):
    """Fixed per-feature affine map: ``(x - shift) / scale``, or its inverse ``x * scale + shift``.

    Tabular networks standardise their input and de-standardise the generator's output with the training
    mean and standard deviation (at least 1; buffers, saved with the weights). The function class is that
    of the published MLPs (a linear layer absorbs an affine map); only the starting point changes, which
    matters on unscaled KDD99 features spanning 0..5e6.
    """

    def __init__(self, dim: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> None:
        """Set shift/scale to the mean and std of ``x`` (N, D), the scale at least 1.

        Features with std below 1 (KDD99's one-hot and rate columns) are only centred: dividing a rare
        one-hot column by its tiny std would turn its ones into values of several hundred.
        """
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0, correction=0).clamp(min=1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverse:
            return x * self.scale + self.shift
        return (x - self.shift) / self.scale


def fit_scales(x: torch.Tensor, *nets: nn.Module) -> None:
    """Fit every ``FeatureScale`` inside ``nets`` to the training data ``x`` (N, D)."""
    for net in nets:
        for m in net.modules():
            if isinstance(m, FeatureScale):
                m.fit(x)
