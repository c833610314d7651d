"""VQ-VAE: EMA codebook with usage statistics and dead-code restarts, plus a transformer prior over codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.config_cli import option
from render3d.zoo.base import ImageSpec, ModelConfig, ZooModel, to_signed, to_unit
from render3d.zoo.nets import ConvDecoder, ConvEncoder
from render3d.zoo.transformer import TokenTransformer


@dataclass
class VQVAEConfig(ModelConfig):
    """VQ-VAE options.

    Args:
        lr (float): Adam learning rate. Default: 2e-4.
        hidden (int): Width of the first convolution (deeper layers double it). Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
        codes (int): Codebook size. Default: 128.
        code_dim (int): Dimensions of each code vector. Default: 32.
        commitment (float): Weight of the commitment loss. Default: 0.25.
        decay (float): EMA decay of the codebook. Default: 0.99.
        dead_threshold (float): Restart a code whose EMA usage count falls below this. Default: 0.05.
        prior_dim (int): Width of the transformer prior over codes. Default: 64.
        prior_layers (int): Layers of the transformer prior. Default: 2.
        prior_heads (int): Query heads of the prior (key / value heads: half as many, grouped-query attention).
            Default: 4.
    """

    codes: int = option("codebook size", default=128)
    code_dim: int = option("dimensions of each code vector", default=32)
    commitment: float = option("weight of the commitment loss", default=0.25)
    decay: float = option("EMA decay of the codebook", default=0.99)
    dead_threshold: float = option("restart a code whose EMA usage count falls below this", default=0.05)
    prior_dim: int = option("width of the transformer prior over codes", default=64)
    prior_layers: int = option("layers of the transformer prior", default=2)
    prior_heads: int = option("query heads of the prior (key/value heads: half as many, grouped-query attention)", default=4)


class EMACodebook(nn.Module):
    """Vector quantiser whose codes are exponential moving averages of the vectors assigned to them."""

    def __init__(self, codes: int, dim: int, decay: float, dead_threshold: float) -> None:
        super().__init__()
        self.decay, self.dead_threshold = decay, dead_threshold
        self.register_buffer("embedding", torch.randn(codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(codes))
        self.register_buffer("embed_sum", self.embedding.clone())
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self._last_inputs: Optional[Tensor] = None

    def nearest(self, flat: Tensor) -> Tensor:
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.t() + self.embedding.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z [B, D, h, w]`` -> (quantised z with straight-through gradients, indices ``[B, h, w]``).

        Always in float32 (also under autocast): code assignment must not depend on rounding.
        """
        z = z.float()
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        with torch.autocast(z.device.type, enabled=False):
            idx = self.nearest(flat.detach())
        if self.training:
            self._update(flat.detach(), idx)
        q = self.embedding[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        return z + (q - z).detach(), idx.view(b, h, w)

    @torch.no_grad()
    def _update(self, flat: Tensor, idx: Tensor) -> None:
        onehot = F.one_hot(idx, len(self.embedding)).type_as(flat)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + len(self.embedding) * 1e-5) * n  # Laplace smoothing
        self.embedding.copy_(self.embed_sum / smoothed[:, None])
        self._last_inputs = flat

    @torch.no_grad()
    def restart_dead(self) -> int:
        """Move codes that are (almost) never chosen onto random recent encoder outputs."""
        if self._last_inputs is None:
            return 0
        dead = (self.cluster_size < self.dead_threshold).nonzero().squeeze(1)
        if len(dead):
            pick = torch.randint(len(self._last_inputs), (len(dead),), device=dead.device)
            self.embedding[dead] = self._last_inputs[pick]
            self.embed_sum[dead] = self._last_inputs[pick]
            self.cluster_size[dead] = 1.0
            self.restarts += len(dead)
        return int(len(dead))

    def usage(self) -> dict[str, float]:
        """Perplexity of code use (EMA counts) and the fraction of codes in use."""
        p = self.cluster_size / self.cluster_size.sum()
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
        return {
            "code_perplexity": float(perplexity),
            "codes_used": float((self.cluster_size >= self.dead_threshold).float().mean()),
            "code_restarts": float(self.restarts),
        }


class VQVAE(ZooModel):
    """Encoder -> a grid of codebook indices (S/4 x S/4) -> decoder; a causal transformer learns
    the distribution of index grids (trained on the encoder's current codes, gradients stopped),
    which is what :meth:`sample` draws from."""

    name = "vqvae"
    description = "VQ-VAE (EMA codebook, restarts) + transformer prior (GQA) over codes"
    config_type = VQVAEConfig
    can_encode = True

    def __init__(self, config: VQVAEConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        self.grid = spec.size // 4
        self.encoder = ConvEncoder(spec.channels, config.hidden, config.code_dim)
        self.codebook = EMACodebook(config.codes, config.code_dim, config.decay, config.dead_threshold)
        self.decoder = ConvDecoder(config.code_dim, config.hidden, spec.channels)
        self.prior = TokenTransformer(config.codes, self.grid * self.grid, config.prior_dim, config.prior_layers,
                                      config.prior_heads, max(1, config.prior_heads // 2))

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        z = self.encoder(to_signed(x)).float()
        q, idx = self.codebook(z)
        recon = F.mse_loss(torch.tanh(self.decoder(q).float()), to_signed(x))
        commit = F.mse_loss(z, q.detach())
        with torch.autocast(x.device.type, enabled=False):  # tiny, and bfloat16 attention backward is slow on CPUs
            prior_nll = self.prior.nll(idx.flatten(1).detach()).mean() / idx[0].numel()
        loss = recon + self.config.commitment * commit + prior_nll
        return loss, {"recon": float(recon.detach()), "prior_nats_per_code": float(prior_nll.detach())}

    def after_step(self) -> None:
        self.codebook.restart_dead()

    def encode(self, x: Tensor) -> Tensor:
        """Code indices ``[B, S/4, S/4]``."""
        return self.codebook(self.encoder(to_signed(x)))[1]

    def decode(self, z: Tensor) -> Tensor:
        q = self.codebook.embedding[z].permute(0, 3, 1, 2)
        return to_unit(torch.tanh(self.decoder(q).float()))

    def sample(self, n: int, generator: Optional[torch.Generator] = None, temperature: float = 1.0, **options: Any) -> Tensor:
        tokens = self.prior.sample(n, generator, temperature)
        return self.decode(tokens.view(n, self.grid, self.grid))

    def stats(self) -> dict[str, float]:
        return self.codebook.usage()
