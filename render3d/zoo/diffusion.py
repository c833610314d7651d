"""Denoising diffusion (DDPM training; DDPM / DDIM sampling with any step count; classifier-free guidance)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.nn import schedule
from render3d.nn.embeddings import sinusoidal_embedding
from render3d.zoo.base import (
    ImageSpec, ModelConfig, ZooModel, discretized_gaussian_log_prob, nats_to_bits_per_dim, to_signed, to_unit, update_ema,
)
from render3d.zoo.nets import attention_fp32


@dataclass
class DiffusionConfig(ModelConfig):
    """Diffusion options.

    Args:
        lr (float): Adam learning rate. Default: 2e-3.
        hidden (int): Channels of the U-Net's first level (deeper levels: ``hidden`` times ``mults``). Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
        mults (str): Channel multiplier of each U-Net level, comma-separated (one stride-2 step between levels).
            Default: "1,2".
        patch (int): Pixel-unshuffle factor of the input: the U-Net runs at size / patch on patch^2 x channels.
            Default: 2.
        attention (bool): Self-attention at the U-Net's lowest resolution. Default: True.
        ema (float): Decay of the weight average used for sampling (0: sample with the live weights). Default: 0.999.
        timesteps (int): Diffusion steps T of the linear beta schedule (1e-4 .. 0.02, scaled for T != 1000). Default:
            1000.
        sampler (str): Default sampler: ``ddim`` (deterministic, eta 0) or ``ddpm`` (ancestral, eta 1). Default:
            "ddim".
        sample_steps (int): Default number of sampling steps (respaced; T for the original DDPM sampler). Default: 50.
        guidance (float): Classifier-free guidance scale when the data has labels (1: plain conditional). Default: 3.0.
        label_dropout (float): Probability of training without the label (for classifier-free guidance). Default: 0.1.
        min_snr (float): Min-SNR-gamma loss weight min(SNR, gamma) / SNR (Hang et al. 2023; 0: plain noise MSE).
            Default: 5.0.
        elbo_samples (int): Time steps drawn per image for the Monte Carlo ELBO (bits/dim). Default: 4.
    """

    lr: float = option("Adam learning rate", default=2e-3)
    hidden: int = option("channels of the U-Net's first level (deeper levels: hidden x mults)", default=32)
    mults: str = option("channel multiplier of each U-Net level, comma-separated (one stride-2 step between levels)", default="1,2")
    patch: int = option("pixel-unshuffle factor of the input: the U-Net runs at size / patch on patch^2 x channels", default=2)
    attention: bool = option("self-attention at the U-Net's lowest resolution", default=True)
    ema: float = option("decay of the weight average used for sampling (0: sample with the live weights)", default=0.999)
    timesteps: int = option("diffusion steps T of the linear beta schedule (1e-4 .. 0.02, scaled for T != 1000)", default=1000)
    sampler: str = option("default sampler: ddim (deterministic, eta 0) or ddpm (ancestral, eta 1)", default="ddim")
    sample_steps: int = option("default number of sampling steps (respaced; T for the original DDPM sampler)", default=50)
    guidance: float = option("classifier-free guidance scale when the data has labels (1: plain conditional)", default=3.0)
    label_dropout: float = option("probability of training without the label (for classifier-free guidance)", default=0.1)
    min_snr: float = option("Min-SNR-gamma loss weight min(SNR, gamma) / SNR (Hang et al. 2023; 0: plain noise MSE)", default=5.0)
    elbo_samples: int = option("time steps drawn per image for the Monte Carlo ELBO (bits/dim)", default=4)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time (and label) embedding added in between."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(_groups(cin), cin), nn.GroupNorm(_groups(cout), cout)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class _Attention(nn.Module):
    """Multi-head self-attention over the pixels of a (small) feature map, residual."""

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = attention_fp32(q, k, v)  # [b, heads, hw, c / heads]
        return x + self.proj(y.transpose(-1, -2).reshape(b, c, h, w).to(x.dtype))


def parse_mults(text: str) -> list[int]:
    """``"1,2,2"`` -> ``[1, 2, 2]`` (a one-line error for anything else)."""
    try:
        mults = [int(m) for m in text.split(",")]
    except ValueError:
        mults = []
    if not mults or min(mults) < 1:
        raise Render3DError(f"--diffusion.mults must be comma-separated positive integers like 1,2,2, not {text!r}")
    return mults


class UNet(nn.Module):
    """A U-Net predicting the noise, conditioned on time and an optional label.

    The input is first pixel-unshuffled by ``patch`` (a 28x28 image becomes 14x14 with 4x the
    channels for ``patch = 2``): on a CPU this cuts the cost of the full-resolution levels,
    which dominate a U-Net's FLOPs, at little loss for small images. Each level has one
    residual block on the way down and one (with the skip connection) on the way up; the
    lowest level adds self-attention.
    """

    def __init__(self, spec: ImageSpec, hidden: int, mults: list[int], patch: int = 1, attention: bool = True) -> None:
        super().__init__()
        inner = spec.size // patch
        if spec.size % patch or inner % 2 ** (len(mults) - 1):
            raise Render3DError(f"image size {spec.size} must divide by patch {patch} times 2^{len(mults) - 1} "
                                f"(for {len(mults)} U-Net levels): change --diffusion.patch or --diffusion.mults")
        widths = [hidden * m for m in mults]
        emb = hidden * 4
        self.hidden, self.patch = hidden, patch
        self.time = nn.Sequential(nn.Linear(hidden, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(spec.num_classes + 1, emb) if spec.num_classes else None  # last id: no label
        pixels = spec.channels * patch * patch
        self.inp = nn.Conv2d(pixels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(_ResBlock(w, w, emb) for w in widths)
        self.downsample = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        self.mid = _ResBlock(widths[-1], widths[-1], emb)
        self.attention = _Attention(widths[-1]) if attention else None
        self.up_blocks = nn.ModuleList(_ResBlock(2 * w, w, emb) for w in widths)
        self.upsample = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.out = nn.Sequential(nn.GroupNorm(_groups(widths[0]), widths[0]), nn.SiLU(), nn.Conv2d(widths[0], pixels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor]) -> Tensor:
        e = self.time(sinusoidal_embedding(t, self.hidden))
        if self.label is not None:
            e = e + self.label(y)
        h = self.inp(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, e)
        if self.attention is not None:
            h = self.attention(h)
        for i in reversed(range(len(self.up_blocks))):
            h = self.up_blocks[i](torch.cat([h, skips[i]], 1), e)
            if i > 0:
                h = self.upsample[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(h)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


class Diffusion(ZooModel):
    """DDPM (Ho et al. 2020): predict the noise added at a random step of the forward process.

    Sampling walks a respaced subsequence of the T steps with the DDIM update (Song et al.
    2021): ``eta = 0`` is DDIM (deterministic given the starting noise), ``eta = 1`` the
    DDPM ancestral sampler (exactly DDPM when ``steps = T``). With labels, training drops the
    label with probability ``label_dropout`` and sampling mixes conditional and unconditional
    predictions (classifier-free guidance). Sampling, :meth:`predict_noise` and bits/dim use an
    exponential moving average of the weights (``ema``). ``bits_per_dim`` is a Monte Carlo
    estimate of the variational bound with a discretised decoder at t = 1 (variance beta_t).

    For use as a prior (score distillation, guidance of other models), the public pieces are
    :attr:`alphas_cumprod`, :meth:`add_noise` and :meth:`predict_noise`; they work in the
    model's signal space, ``x0 = 2 * image - 1`` (see :func:`render3d.zoo.base.to_signed`),
    on images of exactly the size and channels the model was trained for (``spec``).
    """

    name = "diffusion"
    description = "DDPM / DDIM diffusion (EMA weights; classifier-free guidance with labels)"
    config_type = DiffusionConfig
    likelihood = "bound"
    has_latent = True
    default_batch_size = 32  # at a fixed time budget, twice the steps of half the batch train it further

    def __init__(self, config: DiffusionConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        if config.sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be ddim or ddpm, not {config.sampler!r}")
        self.net = UNet(spec, config.hidden, parse_mults(config.mults), config.patch, config.attention)
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False) if config.ema > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        betas = schedule.linear_betas(config.timesteps)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod(betas))

    @property
    def sampling_net(self) -> UNet:
        """The weights used for sampling and :meth:`predict_noise`: the EMA copy, or the live net with ``ema = 0``."""
        return self.net_ema if self.net_ema is not None else self.net

    # ----- forward process and training -----------------------------------------------
    def add_noise(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``: a draw of q(x_t | x_0).

        ``x0`` is in the signal space ``[-1, 1]``, ``t [B]`` holds integer step indices in
        ``0 .. T-1`` (``T - 1`` is pure noise up to ``abar < 1e-3`` for the default schedule),
        ``noise`` is standard normal with the shape of ``x0``.
        """
        return schedule.add_noise(x0, self.alphas_cumprod[t].view(-1, 1, 1, 1), noise)

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
        error = (self.net(self.add_noise(x0, t, noise), t, labels).float() - noise).pow(2).flatten(1).mean(1)
        if self.config.min_snr > 0:
            snr = self.alphas_cumprod[t] / (1 - self.alphas_cumprod[t])
            error = error * snr.clamp(max=self.config.min_snr) / snr
        return error.mean(), {}

    @torch.no_grad()
    def after_step(self) -> None:
        if self.net_ema is not None:
            self.ema_updates += 1
            update_ema(self.net_ema, self.net, self.config.ema, int(self.ema_updates))

    # ----- the public noise predictor -------------------------------------------------------
    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Optional[Tensor] = None, guidance: float = 1.0) -> Tensor:
        """The (EMA) network's estimate of the noise in ``x_t`` at steps ``t``.

        Args:
            x_t: noisy images ``[B, C, S, S]`` in the signal space (see :meth:`add_noise`), at
                the channels and size the model was trained for.
            t: integer step indices ``[B]`` (or one scalar) in ``0 .. T-1``.
            cond: class labels ``[B]`` for a model trained with labels (None: unconditional,
                the "no label" embedding that classifier-free guidance uses).
            guidance: with ``cond``, the classifier-free guidance scale: ``uncond + guidance
                * (cond - uncond)`` (1: the plain conditional prediction, one network call).

        Returns float32 ``[B, C, S, S]``. Gradients flow to ``x_t`` when it requires them (the
        weights never do); runs under bfloat16 autocast when ``config.bf16`` applies.
        """
        expected = (self.spec.channels, self.spec.size, self.spec.size)
        if x_t.dim() != 4 or tuple(x_t.shape[1:]) != expected:
            raise ValueError(f"predict_noise takes [B, {expected[0]}, {expected[1]}, {expected[2]}] images "
                             f"(what this model was trained on), not {list(x_t.shape)}")
        t = t.to(device=x_t.device, dtype=torch.long).expand(len(x_t)) if t.dim() == 0 else t.to(x_t.device).long()
        if cond is not None and not self.spec.num_classes:
            raise ValueError("this diffusion model was trained without labels: pass cond=None")
        labels = self._labels(cond, len(x_t), x_t.device)
        net = self.sampling_net
        with self.autocast():
            if cond is None or guidance == 1.0:
                return net(x_t, t, labels).float()
            null = torch.full_like(labels, self.spec.num_classes)
            both = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null])).float()
        conditional, unconditional = both.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    @torch.no_grad()
    def refine(self, images: Tensor, strength: float, steps: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """SDEdit (Meng et al. 2022): noise ``images [B, C, S, S]`` in [0, 1] to step ``strength * T``
        and denoise them back with ``steps`` deterministic DDIM steps (unconditional): the model's
        nearest clean images, in [0, 1]. ``strength`` 0 returns them unchanged, 1 ignores them."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        start = int(round(strength * (self.config.timesteps - 1)))
        if start == 0:
            return images.clone()
        noise = torch.randn(images.shape, generator=generator).to(images)
        x_t = self.add_noise(to_signed(images), torch.full((len(images),), start, device=images.device), noise)
        labels = torch.full((len(images),), self.spec.num_classes, device=images.device) if self.spec.num_classes else None
        return self.generate(x_t, sampler="ddim", steps=steps, guidance=1.0, labels=labels, start=start)

    # ----- likelihood -------------------------------------------------------------------
    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        x0, T, net = to_signed(x), self.config.timesteps, self.sampling_net
        labels = self._labels(y, len(x0), x0.device)
        ab_T = self.alphas_cumprod[-1]
        prior = 0.5 * (ab_T * x0.pow(2) + (1 - ab_T) - 1 - torch.log(1 - ab_T)).flatten(1).sum(1)
        # L_0: discretised Gaussian decoder p(x_0 | x_1)
        t0 = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        noise = torch.randn_like(x0)
        x1 = self.add_noise(x0, t0, noise)
        b0 = self.betas[0]
        mean0 = (x1 - b0 / (1 - self.alphas_cumprod[0]).sqrt() * net(x1, t0, labels)) / (1 - b0).sqrt()
        decoder = -discretized_gaussian_log_prob(x0, mean0, 0.5 * torch.log(b0).expand_as(x0)).flatten(1).sum(1)
        # sum over t = 1..T-1 of KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), estimated from random t
        terms = torch.zeros(len(x0), device=x0.device)
        for _ in range(self.config.elbo_samples):
            t = torch.randint(1, T, (len(x0),), device=x0.device)
            noise = torch.randn_like(x0)
            eps = net(self.add_noise(x0, t, noise), t, labels)
            beta, ab, ab_prev = self.betas[t], self.alphas_cumprod[t], self.alphas_cumprod[t - 1]
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

    @torch.no_grad()
    def generate(
        self,
        z: Tensor,
        sampler: Optional[str] = None,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        labels: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
        start: Optional[int] = None,
        **options: Any,
    ) -> Tensor:
        """Denoise ``z`` (noise at t = T, or a noisy image at step ``start``) with ``steps`` respaced
        steps of ``sampler`` (ddim | ddpm); returns images in [0, 1]."""
        cfg = self.config
        first = cfg.timesteps - 1 if start is None else max(0, min(int(start), cfg.timesteps - 1))
        sampler, steps = sampler or cfg.sampler, min(steps or cfg.sample_steps, first + 1)
        guidance = cfg.guidance if guidance is None else guidance
        eta = {"ddim": 0.0, "ddpm": 1.0}[sampler]
        if self.spec.num_classes and labels is None:
            labels = torch.arange(len(z), device=z.device) % self.spec.num_classes
        seq = schedule.respaced_steps(first, steps)
        x = z
        for i, t in enumerate(seq):
            eps = self.predict_noise(x, torch.tensor(t), labels, guidance)
            ab = self.alphas_cumprod[t]
            ab_prev = self.alphas_cumprod[seq[i + 1]] if i + 1 < len(seq) else torch.ones((), device=x.device)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            x = schedule.ddim_update(x, x0, ab, ab_prev, eta, generator, last=i + 1 == len(seq))
        return to_unit(x)
