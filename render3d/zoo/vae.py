"""Variational autoencoder: Gaussian latent, discretised-Gaussian decoder, ELBO in bits/dim, beta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.config_cli import option
from render3d.zoo.base import (
    ImageSpec, ModelConfig, ZooModel, discretized_gaussian_log_prob, nats_to_bits_per_dim, to_signed, to_unit,
)
from render3d.zoo.nets import VectorDecoder, VectorEncoder


@dataclass
class VAEConfig(ModelConfig):
    """VAE options.

    Args:
        lr (float): Adam learning rate. Default: 1e-3.
        hidden (int): Width of the first convolution (deeper layers double it). Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
        latent (int): Latent dimensions. Default: 16.
        beta (float): Weight of the KL term during training (1: the ELBO; reported bits/dim always use 1). Default: 1.0.
        min_log_std (float): Lower bound of the decoder's per-pixel log standard deviation. Default: -4.5.
    """

    lr: float = option("Adam learning rate", default=1e-3)
    latent: int = option("latent dimensions", default=16)
    beta: float = option("weight of the KL term during training (1: the ELBO; reported bits/dim always use 1)", default=1.0)
    min_log_std: float = option("lower bound of the decoder's per-pixel log standard deviation", default=-4.5)


class VAE(ZooModel):
    """q(z|x) = N(mu, sigma), p(z) = N(0, I), p(x|z) a per-pixel Gaussian discretised to 256 levels.

    The discretised decoder makes the ELBO a bound on the log-probability of the 8-bit
    image itself, so its bits/dim compare directly with PixelCNN's exact value.
    """

    name = "vae"
    description = "variational autoencoder (ELBO, beta)"
    config_type = VAEConfig
    can_encode = True
    likelihood = "bound"
    has_latent = True

    def __init__(self, config: VAEConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        self.encoder = VectorEncoder(spec.channels, spec.size, config.hidden, 2 * config.latent)
        self.decoder = VectorDecoder(config.latent, spec.size, config.hidden, 2 * spec.channels)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_var = self.encoder(to_signed(x)).float().chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def _likelihood(self, z: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.decoder(z).float().chunk(2, dim=1)
        return torch.tanh(mean), log_std.clamp(min=self.config.min_log_std)

    def elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(-log p(x|z), KL(q(z|x) || p(z))) per image, in nats, with one reparameterised sample."""
        mu, log_var = self._posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        mean, log_std = self._likelihood(z)
        nll = -discretized_gaussian_log_prob(to_signed(x), mean, log_std).flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return nll, kl

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        nll, kl = self.elbo_terms(x)
        loss = nats_to_bits_per_dim(nll + self.config.beta * kl, self.spec.dims).mean()
        return loss, {"kl_nats": float(kl.mean().detach())}

    def bits_per_dim(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        nll, kl = self.elbo_terms(x)
        return nats_to_bits_per_dim(nll + kl, self.spec.dims)

    def encode(self, x: Tensor) -> Tensor:
        return self._posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return to_unit(self._likelihood(z)[0])

    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return torch.randn(n, self.config.latent, generator=generator).to(self.device)

    def generate(self, z: Tensor, **options: Any) -> Tensor:
        return self.decode(z)
