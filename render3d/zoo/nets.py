"""Convolutional building blocks shared by the zoo's models (sizes divisible by 4: 28, 32, ...)."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _norm(channels: int) -> nn.Module:
    return nn.GroupNorm(min(8, channels), channels)


class ConvEncoder(nn.Module):
    """``[B, C, S, S]`` -> ``[B, out, S/4, S/4]``: two stride-2 stages.

    ``spectral=True`` gives a GAN discriminator trunk: spectral-normalised convolutions,
    LeakyReLU and no normalisation layers.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, spectral: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if spectral else (lambda m: m)
        act = (lambda: nn.LeakyReLU(0.2)) if spectral else nn.SiLU
        norm = (lambda c: nn.Identity()) if spectral else _norm
        h1, h2 = hidden, hidden * 2
        self.net = nn.Sequential(
            wrap(nn.Conv2d(in_channels, h1, 3, padding=1)), act(),
            wrap(nn.Conv2d(h1, h1, 4, stride=2, padding=1)), norm(h1), act(),
            wrap(nn.Conv2d(h1, h2, 4, stride=2, padding=1)), norm(h2), act(),
            wrap(nn.Conv2d(h2, out_channels, 3, padding=1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``[B, in, S/4, S/4]`` -> ``[B, out, S, S]``: the mirror image of :class:`ConvEncoder`."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        h1, h2 = hidden, hidden * 2
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, h2, 3, padding=1), _norm(h2), nn.SiLU(),
            nn.ConvTranspose2d(h2, h1, 4, stride=2, padding=1), _norm(h1), nn.SiLU(),
            nn.ConvTranspose2d(h1, h1, 4, stride=2, padding=1), _norm(h1), nn.SiLU(),
            nn.Conv2d(h1, out_channels, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class VectorEncoder(nn.Module):
    """Image -> flat vector ``[B, out]`` (AE / VAE encoders, the GAN discriminator)."""

    def __init__(self, channels: int, size: int, hidden: int, out_features: int, spectral: bool = False) -> None:
        super().__init__()
        s = size // 4
        self.trunk = ConvEncoder(channels, hidden, hidden * 2, spectral=spectral)
        head = nn.Linear(hidden * 2 * s * s, out_features)
        self.head = spectral_norm(head) if spectral else head
        self.act = nn.LeakyReLU(0.2) if spectral else nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act(self.trunk(x)).flatten(1))


class VectorDecoder(nn.Module):
    """Flat vector ``[B, in]`` -> image logits ``[B, out, S, S]`` (AE / VAE decoders, the GAN generator)."""

    def __init__(self, in_features: int, size: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.s = size // 4
        self.width = hidden * 2
        self.stem = nn.Sequential(nn.Linear(in_features, self.width * self.s * self.s), nn.SiLU())
        self.body = ConvDecoder(self.width, hidden, out_channels)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.stem(z).view(-1, self.width, self.s, self.s))


def attention_fp32(q: Tensor, k: Tensor, v: Tensor, **options) -> Tensor:
    """``F.scaled_dot_product_attention`` in float32 even under bfloat16 autocast.

    On CPUs the bfloat16 attention backward is about 9x slower than float32's at the zoo's
    sizes (64 x 4 heads x 49 tokens), which made attention half of a training step.
    """
    with torch.autocast(q.device.type, enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **options)


def slerp(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """Spherical interpolation between noise tensors (keeps Gaussian noise at its usual norm)."""
    af, bf = a.flatten(1), b.flatten(1)
    cos = (af * bf).sum(1) / (af.norm(dim=1) * bf.norm(dim=1)).clamp_min(1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-6, 1 - 1e-6))[:, None]
    w = w.reshape(-1, 1)
    out = (torch.sin((1 - w) * omega) * af + torch.sin(w * omega) * bf) / torch.sin(omega)
    return out.view_as(a)
