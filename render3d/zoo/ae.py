"""Deterministic autoencoder with a flat latent; samples from a full-covariance Gaussian fitted to training codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor
import torch.nn.functional as F

from render3d.config_cli import option
from render3d.zoo.base import ImageSpec, ModelConfig, ZooModel, to_signed, to_unit
from render3d.zoo.nets import VectorDecoder, VectorEncoder


@dataclass
class AEConfig(ModelConfig):
    """Autoencoder options.

    Args:
        lr (float): Adam learning rate. Default: 1e-3.
        hidden (int): Width of the first convolution (deeper layers double it). Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
        latent (int): Latent dimensions. Default: 16.
        code_momentum (float): Momentum of the running mean / covariance of training codes (used by ``sample``).
            Default: 0.99.
    """

    lr: float = option("Adam learning rate", default=1e-3)
    latent: int = option("latent dimensions", default=16)
    code_momentum: float = option("momentum of the running mean / covariance of training codes (used by sample)", default=0.99)


class Autoencoder(ZooModel):
    """Encoder -> ``latent`` numbers -> decoder, trained on MSE.

    An AE has no prior, so :meth:`sample` draws codes from a Gaussian whose mean and full
    covariance track the codes of the training batches (a running average): the codes are
    strongly correlated, and a diagonal fit put samples where no training code lies.
    """

    name = "ae"
    description = "autoencoder (MSE; samples from a Gaussian fitted to its codes)"
    config_type = AEConfig
    can_encode = True
    has_latent = True

    def __init__(self, config: AEConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        self.encoder = VectorEncoder(spec.channels, spec.size, config.hidden, config.latent)
        self.decoder = VectorDecoder(config.latent, spec.size, config.hidden, spec.channels)
        self.register_buffer("code_mean", torch.zeros(config.latent))
        self.register_buffer("code_cov", torch.eye(config.latent))

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        z = self.encoder(to_signed(x)).float()
        recon = torch.tanh(self.decoder(z).float())
        with torch.no_grad():
            m = self.config.code_momentum
            self.code_mean.lerp_(z.mean(0), 1 - m)
            if len(z) > 1:
                self.code_cov.lerp_(torch.cov(z.T).reshape_as(self.code_cov).to(self.code_cov), 1 - m)  # float32 under autocast too
        return F.mse_loss(recon, to_signed(x)), {}

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(to_signed(x)).float()

    def decode(self, z: Tensor) -> Tensor:
        return to_unit(torch.tanh(self.decoder(z).float()))

    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        eps = torch.randn(n, self.config.latent, generator=generator).to(self.code_mean)
        jitter = 1e-5 * torch.eye(self.config.latent, device=self.code_cov.device)
        return self.code_mean + eps @ torch.linalg.cholesky(self.code_cov + jitter).T

    def generate(self, z: Tensor, **options: Any) -> Tensor:
        return self.decode(z)
