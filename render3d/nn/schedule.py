"""The diffusion noise schedule and the DDIM update, shared by the zoo's image diffusion, the video world model
and the score-distillation prior.

Signals live in a space where the data has roughly unit scale; ``x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) noise`` for integer steps ``t`` in ``0 .. T-1`` (Ho et al. 2020), and
sampling walks a respaced subsequence of the steps with the DDIM update (Song et al. 2021).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def linear_betas(timesteps: int) -> Tensor:
    """DDPM's linear beta schedule (1e-4 .. 0.02 for T = 1000; scaled so other T keep its shape), float64 ``[T]``."""
    scale = 1000.0 / timesteps
    return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), timesteps, dtype=torch.float64)


def alphas_cumprod(betas: Tensor) -> Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)``: the signal fraction of each step, float32 ``[T]``."""
    return torch.cumprod(1.0 - betas, 0).float()


def add_noise(x0: Tensor, abar: Tensor, noise: Tensor) -> Tensor:
    """``sqrt(abar) x0 + sqrt(1 - abar) noise``; ``abar`` broadcasts against ``x0`` (e.g. ``[B, 1, 1, 1]``)."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def respaced_steps(first: int, steps: int) -> list[int]:
    """About ``steps`` integer steps from ``first`` down to 0, evenly spaced, no repeats."""
    return torch.linspace(first, 0, max(steps, 1)).round().long().unique_consecutive().tolist()


def ddim_update(x: Tensor, x0: Tensor, abar: Tensor, abar_prev: Tensor, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, last: bool = False) -> Tensor:
    """One DDIM step from ``x`` at ``abar`` to ``abar_prev`` given the (possibly clipped) clean estimate ``x0``.

    The noise estimate is recomputed from ``x`` and ``x0`` so the two agree. ``eta = 0`` is
    deterministic DDIM, ``eta = 1`` DDPM's ancestral step; no fresh noise is added on the ``last`` step.
    """
    eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    out = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp_min(0).sqrt() * eps
    if eta > 0 and not last:
        out = out + sigma * torch.randn(x.shape, generator=generator).to(x)
    return out
