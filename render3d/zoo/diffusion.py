"""Denoising diffusion (DDPM training; DDPM / DDIM sampling with any step count; classifier-free guidance)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.config_cli import option
from render3d.zoo.base import (
    ImageSpec, ModelConfig, ZooModel, discretized_gaussian_log_prob, nats_to_bits_per_dim, to_signed, to_unit,
)
from render3d.zoo.nets import sinusoidal_embedding


@dataclass
class DiffusionConfig(ModelConfig):
    """Diffusion options."""

    timesteps: int = option("diffusion steps T of the linear beta schedule (1e-4 .. 0.02, scaled for T != 1000)", default=1000)
    sampler: str = option("default sampler: ddim (deterministic, eta 0) or ddpm (ancestral, eta 1)", default="ddim")
    sample_steps: int = option("default number of sampling steps (respaced; T for the original DDPM sampler)", default=50)
    guidance: float = option("classifier-free guidance scale when the data has labels (1: plain conditional)", default=2.0)
    label_dropout: float = option("probability of training without the label (for classifier-free guidance)", default=0.1)
    elbo_samples: int = option("time steps drawn per image for the Monte Carlo ELBO (bits/dim)", default=4)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, cin), nn.GroupNorm(8, cout)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """A three-level U-Net (S, S/2, S/4) predicting the noise, conditioned on time and an optional label."""

    def __init__(self, spec: ImageSpec, hidden: int) -> None:
        super().__init__()
        c1, c2, emb = hidden, hidden * 2, hidden * 4
        self.hidden = hidden
        self.time = nn.Sequential(nn.Linear(hidden, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(spec.num_classes + 1, emb) if spec.num_classes else None  # last id: no label
        self.inp = nn.Conv2d(spec.channels, c1, 3, padding=1)
        self.d1, self.d2, self.d3 = _ResBlock(c1, c1, emb), _ResBlock(c1, c2, emb), _ResBlock(c2, c2, emb)
        self.down1, self.down2 = nn.Conv2d(c1, c1, 4, 2, 1), nn.Conv2d(c2, c2, 4, 2, 1)
        self.mid = _ResBlock(c2, c2, emb)
        self.up2, self.up1 = nn.ConvTranspose2d(c2, c2, 4, 2, 1), nn.ConvTranspose2d(c2, c2, 4, 2, 1)
        self.u2, self.u1 = _ResBlock(c2 + c2, c2, emb), _ResBlock(c2 + c1, c1, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, spec.channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor]) -> Tensor:
        e = self.time(sinusoidal_embedding(t, self.hidden))
        if self.label is not None:
            e = e + self.label(y)
        h1 = self.d1(self.inp(x), e)                 # S
        h2 = self.d2(self.down1(h1), e)              # S/2
        h3 = self.mid(self.d3(self.down2(h2), e), e)  # S/4
        u2 = self.u2(torch.cat([self.up2(h3), h2], 1), e)
        u1 = self.u1(torch.cat([self.up1(u2), h1], 1), e)
        return self.out(u1)


class Diffusion(ZooModel):
    """DDPM (Ho et al. 2020): predict the noise added at a random step of the forward process.

    Sampling walks a respaced subsequence of the T steps with the DDIM update (Song et al.
    2021): ``eta = 0`` is DDIM (deterministic given the starting noise), ``eta = 1`` the
    DDPM ancestral sampler (exactly DDPM when ``steps = T``). With labels, training drops the
    label with probability ``label_dropout`` and sampling mixes conditional and unconditional
    predictions (classifier-free guidance). ``bits_per_dim`` is a Monte Carlo estimate of
    the variational bound with a discretised decoder at t = 1 (variance beta_t).
    """

    name = "diffusion"
    description = "DDPM / DDIM diffusion (classifier-free guidance with labels)"
    config_type = DiffusionConfig
    likelihood = "bound"
    has_latent = True

    def __init__(self, config: DiffusionConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        if config.sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be ddim or ddpm, not {config.sampler!r}")
        self.net = UNet(spec, config.hidden)
        T = config.timesteps
        scale = 1000.0 / T
        betas = torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), T, dtype=torch.float64)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bar", torch.cumprod(1.0 - betas, 0).float())

    # ----- forward process and training -----------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t ~ q(x_t | x_0) for step indices ``t`` in 0..T-1 (index T-1 is the last step)."""
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def _labels(self, y: Optional[Tensor], n: int, device: torch.device) -> Optional[Tensor]:
        if not self.spec.num_classes:
            return None
        null = torch.full((n,), self.spec.num_classes, dtype=torch.long, device=device)
        return null if y is None else y

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        x0 = to_signed(x)
        t = torch.randint(0, self.config.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        labels = self._labels(y, len(x0), x0.device)
        if labels is not None and y is not None:
            drop = torch.rand(len(x0), device=x0.device) < self.config.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.spec.num_classes), labels)
        return F.mse_loss(self.net(self.q_sample(x0, t, noise), t, labels), noise), {}

    # ----- likelihood -------------------------------------------------------------------
    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        x0, T = to_signed(x), self.config.timesteps
        labels = self._labels(y, len(x0), x0.device)
        ab_T = self.alpha_bar[-1]
        prior = 0.5 * (ab_T * x0.pow(2) + (1 - ab_T) - 1 - torch.log(1 - ab_T)).flatten(1).sum(1)
        # L_0: discretised Gaussian decoder p(x_0 | x_1)
        t0 = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        noise = torch.randn_like(x0)
        x1 = self.q_sample(x0, t0, noise)
        b0 = self.betas[0]
        mean0 = (x1 - b0 / (1 - self.alpha_bar[0]).sqrt() * self.net(x1, t0, labels)) / (1 - b0).sqrt()
        decoder = -discretized_gaussian_log_prob(x0, mean0, 0.5 * torch.log(b0).expand_as(x0)).flatten(1).sum(1)
        # sum over t = 1..T-1 of KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), estimated from random t
        terms = torch.zeros(len(x0), device=x0.device)
        for _ in range(self.config.elbo_samples):
            t = torch.randint(1, T, (len(x0),), device=x0.device)
            noise = torch.randn_like(x0)
            eps = self.net(self.q_sample(x0, t, noise), t, labels)
            beta, ab, ab_prev = self.betas[t], self.alpha_bar[t], self.alpha_bar[t - 1]
            var_q = beta * (1 - ab_prev) / (1 - ab)
            sq = (eps - noise).pow(2).flatten(1).sum(1) * beta.pow(2) / ((1 - ab) * (1 - beta))
            d = x0[0].numel()
            terms += 0.5 * (d * (torch.log(beta / var_q) + var_q / beta - 1) + sq / beta)
        nll = prior + decoder + (T - 1) * terms / self.config.elbo_samples
        return nats_to_bits_per_dim(nll, self.spec.dims)

    # ----- sampling ---------------------------------------------------------------------
    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        shape = (n, self.spec.channels, self.spec.size, self.spec.size)
        return torch.randn(shape, generator=generator).to(self.device)

    def sample(self, n: int, generator: Optional[torch.Generator] = None, **options: Any) -> Tensor:
        return self.generate(self.sample_latent(n, generator), generator=generator, **options)

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Optional[Tensor] = None, guidance: Optional[float] = None) -> Tensor:
        """The noise in ``x_t`` (images in [-1, 1], ``[B, C, S, S]``) at step indices ``t [B]`` (0..T-1).

        ``cond``: class labels when the model was trained with them (classifier-free guidance
        with ``guidance``, the model's own by default); ``alpha_bar[t]`` is the signal fraction.
        """
        labels = self._labels(cond, len(x_t), x_t.device)  # unconditional: the null label, when there are labels
        return self._eps(x_t, t, labels, self.config.guidance if guidance is None else guidance)

    def _eps(self, x: Tensor, t: Tensor, labels: Optional[Tensor], guidance: float) -> Tensor:
        if labels is None:
            return self.net(x, t, None)
        null = torch.full_like(labels, self.spec.num_classes)
        both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def generate(
        self,
        z: Tensor,
        sampler: Optional[str] = None,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        labels: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
        **options: Any,
    ) -> Tensor:
        """Denoise ``z`` (noise at t = T) with ``steps`` respaced steps of ``sampler`` (ddim | ddpm)."""
        cfg = self.config
        sampler, steps = sampler or cfg.sampler, min(steps or cfg.sample_steps, cfg.timesteps)
        guidance = cfg.guidance if guidance is None else guidance
        eta = {"ddim": 0.0, "ddpm": 1.0}[sampler]
        if self.spec.num_classes and labels is None:
            labels = torch.arange(len(z), device=z.device) % self.spec.num_classes
        seq = torch.linspace(cfg.timesteps - 1, 0, steps).round().long().unique_consecutive().tolist()
        x = z
        for i, t in enumerate(seq):
            t_batch = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            eps = self._eps(x, t_batch, labels, guidance)
            ab = self.alpha_bar[t]
            ab_prev = self.alpha_bar[seq[i + 1]] if i + 1 < len(seq) else torch.ones((), device=x.device)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clipped x0
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp_min(0).sqrt() * eps
            if eta > 0 and i + 1 < len(seq):
                x = x + sigma * torch.randn(x.shape, generator=generator).to(x)
        return to_unit(x)
