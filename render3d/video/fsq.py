"""Finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of ``len(levels)`` latent channels is bounded and rounded to one of ``levels[i]``
values; a token is the tuple of rounded values, numbered ``0 .. prod(levels) - 1``. There is
no codebook to learn and no codebook collapse. Cosmos' discrete tokenizer uses levels
``[8, 8, 8, 5, 5, 5]`` (64,000 tokens); ``[8, 5, 5, 5]`` (1,000 tokens) suits 64x64 clips.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


class FSQ(nn.Module):
    """Quantise ``[B, len(levels), ...]`` latents to values in ``[-1, 1]`` with straight-through gradients."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        if not levels or any(int(n) < 2 for n in levels):
            raise ValueError(f"FSQ levels must be integers of at least 2, got {list(levels)}")
        self.levels = [int(n) for n in levels]
        lv = torch.tensor(self.levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.long), 0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def _view(self, t: Tensor, ndim: int) -> Tensor:
        return t.view(1, -1, *([1] * (ndim - 2)))

    def bound(self, z: Tensor) -> Tensor:
        """Squash channel ``i`` into ``(-(L-1)/2, (L-1)/2)``, shifted by 1/2 for even L so rounding gives L values."""
        lv = self._view(self._levels, z.ndim)
        half = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: Tensor) -> Tensor:
        """Quantised values in ``[-1, 1]`` (``k / (L // 2)``), gradients passed straight through the rounding."""
        bounded = self.bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / self._view(self._levels // 2, z.ndim)

    def values_to_indices(self, values: Tensor) -> Tensor:
        """Quantised values ``[B, D, ...]`` -> token ids ``[B, ...]``."""
        lv = self._view(self._levels, values.ndim)
        return self.digits_to_indices(torch.round(values * (lv // 2) + lv // 2).long().movedim(1, -1))

    def indices_to_values(self, indices: Tensor) -> Tensor:
        """Token ids ``[B, ...]`` -> quantised values ``[B, D, ...]``."""
        lv = self._view(self._levels, indices.ndim + 1)
        return (self.indices_to_digits(indices).movedim(-1, 1).float() - lv // 2) / (lv // 2)

    def level_values(self, channel: int) -> Tensor:
        """The value each level of ``channel`` stands for, ``[levels[channel]]`` (as :meth:`indices_to_values` maps them)."""
        n = self.levels[channel]
        return (torch.arange(n, device=self._levels.device, dtype=torch.float32) - n // 2) / (n // 2)

    def indices_to_digits(self, indices: Tensor) -> Tensor:
        """Token ids ``[...]`` -> the level of each channel ``[..., D]`` (``0 .. levels[i] - 1``)."""
        return (indices.unsqueeze(-1) // self._basis) % self._levels.long()

    def digits_to_indices(self, digits: Tensor) -> Tensor:
        """Levels ``[..., D]`` -> token ids ``[...]``."""
        return (digits.long() * self._basis).sum(-1)
