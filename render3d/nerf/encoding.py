"""Input encodings for NeRF fields, in pure PyTorch.

- :class:`HashEncoding`: Instant-NGP's multiresolution hash grid (Müller et al. 2022).
  Each level's 8 cell corners are hashed (or indexed densely where the level fits in its
  table) and blended trilinearly; all levels are gathered with one ``index_select`` and
  the gradient is accumulated with ``bincount`` (ten times faster on CPU than ``index_add_``).
  On the CPU the numba kernels of :mod:`render3d.nerf.encoding_numba` do the same work
  (see :mod:`render3d.cpu_kernels`); this torch code is their reference.
- :func:`sh_encoding`: real spherical harmonics of view directions (degree 4, 16 values).
- :class:`PositionalEncoding`: NeRF's sin/cos frequency encoding.
"""

from __future__ import annotations

import math

from typing import Optional

import torch
from torch import Tensor, nn

from render3d.cpu_kernels import kernels_enabled
from render3d.splat.sh import sh_bases

PRIMES = (1, 2654435761, 805459861)


class HashEncoding(nn.Module):
    """Multiresolution hash encoding of points in ``[0, 1]^3``.

    Args:
        levels: number of resolution levels.
        features: features per level.
        log2_table_size: entries per level's table (2**n).
        base_resolution: coarsest grid resolution.
        max_resolution: finest grid resolution (sets the per-level growth factor).
        generator: draws the table's initial values (default: torch's global generator).
    """

    def __init__(
        self, levels: int = 16, features: int = 2, log2_table_size: int = 19, base_resolution: int = 16, max_resolution: int = 2048,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        self.levels, self.features = levels, features
        self.table_size = 2**log2_table_size
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        sizes = [min(self.table_size, (r + 1) ** 3) for r in resolutions]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.long), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets[:-1], dtype=torch.long), persistent=False)
        self.register_buffer("dense", torch.tensor([(r + 1) ** 3 <= self.table_size for r in resolutions]), persistent=False)
        self.register_buffer("resolutions_float", self.resolutions.float(), persistent=False)
        self.dense_levels = int(self.dense.sum())  # dense levels come first: resolutions grow
        self.embeddings = nn.Parameter(torch.empty(offsets[-1], features).uniform_(-1e-4, 1e-4, generator=generator))
        self.frequency_limit = 1.0  # FreeNeRF-style annealing: see frequency_mask

    @property
    def output_dim(self) -> int:
        return self.levels * self.features

    def corner_indices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows ``[8, L, P]`` (int32) and trilinear weights ``[8, L, P]`` for points ``x [P, 3]``.

        The corner axis comes first and points last, so every broadcast runs over long
        contiguous rows (an inner axis of 2 is several times slower on CPU). Hashing is
        done in int32: its wrap-around keeps the low 32 bits of Instant-NGP's uint32 hash,
        and the tables are powers of two, so ``& (T - 1)`` equals ``% T``.
        """
        dense_levels = self.dense_levels
        lows, weights = [], []
        for axis in range(3):
            scaled = self.resolutions_float[:, None] * x[None, :, axis]  # [L, P]
            cell = torch.floor(scaled)
            frac = scaled - cell
            low = cell.int()
            lows.append(torch.stack([low, low + 1]))  # [2, L, P]
            weights.append(torch.stack([1.0 - frac, frac]))
        w = _outer(_outer(weights[2], weights[1], torch.mul), weights[0], torch.mul)  # corner = 4 z + 2 y + x
        parts = []
        if dense_levels:
            stride = self.resolutions[:dense_levels, None].int() + 1
            offset = self.offsets[:dense_levels, None].int()
            ix = lows[0][:, :dense_levels] + offset
            iy = lows[1][:, :dense_levels] * stride
            iz = lows[2][:, :dense_levels] * (stride * stride)
            parts.append(_outer(_outer(iz, iy, torch.add), ix, torch.add))
        if dense_levels < self.levels:
            h = [lows[a][:, dense_levels:] * _PRIMES_INT32[a] for a in range(3)]
            hashed = _outer(_outer(h[2], h[1], torch.bitwise_xor), h[0], torch.bitwise_xor)
            parts.append((hashed & (self.table_size - 1)) + self.offsets[dense_levels:, None].int())
        return torch.cat(parts, dim=1), w

    def forward(self, x: Tensor) -> Tensor:
        """Features ``[P, levels * features]`` of points ``x [P, 3]`` in [0, 1].

        Differentiable in the table and, where ``x`` requires it (learned camera poses), in ``x``.
        """
        x = x.clamp(0.0, 1.0)
        if kernels_enabled(x, self.embeddings):
            from render3d.nerf.encoding_numba import hash_encode_numba

            features = hash_encode_numba(self.embeddings, x, self.resolutions_float, self.sizes, self.offsets, self.dense)
            if self.frequency_limit < 1.0:
                mask = frequency_mask(self.levels, self.frequency_limit).to(features)
                features = features * mask.repeat_interleave(self.features)
            return features
        index, w = self.corner_indices(x)
        levels, p = index.shape[1:]
        features = _TrilinearGather.apply(self.embeddings, index.reshape(8, -1), w.reshape(8, -1))  # [L * P, F]
        features = features.reshape(levels, p, self.features)
        if self.frequency_limit < 1.0:
            features = features * frequency_mask(self.levels, self.frequency_limit).to(features)[:, None, None]
        return features.transpose(0, 1).reshape(p, levels * self.features)


def frequency_mask(bands: int, fraction: float) -> Tensor:
    """Weights ``[bands]`` that switch bands on from the lowest, as FreeNeRF does: the first band is always
    on, ``fraction`` of the bands are, and the band being switched on ramps linearly (1 turns all on)."""
    visible = fraction * bands
    return (visible - torch.arange(bands, dtype=torch.float32) + 1.0).clamp(0.0, 1.0)


def _outer(a: Tensor, b: Tensor, op) -> Tensor:
    """``op`` of every pair of rows: ``[m, ...]`` and ``[n, ...]`` -> ``[m * n, ...]``."""
    return op(a[:, None], b[None]).flatten(0, 1)


_PRIMES_INT32 = tuple(p - 2**32 if p >= 2**31 else p for p in PRIMES)


class _TrilinearGather(torch.autograd.Function):
    """``sum_c w[c] * table[index[c]]``: ``table [T, F]``, ``index, w [8, N]`` -> ``[N, F]``.

    Where ``w`` requires it (the points do), its gradient is ``grad · table[index[c]]``.

    The backward accumulates with one ``bincount`` per feature on CPU, about ten times
    faster there than ``index_add_`` (autograd's backward of a gather); on a GPU it uses
    ``index_add_``, whose atomics are fast and which, unlike ``bincount``, needs no host sync.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(table, index, w)
        ctx.rows = table.shape[0]
        corners = table.index_select(0, index.reshape(-1)).reshape(*index.shape, table.shape[1])
        return (corners * w[..., None]).sum(dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        table, index, w = ctx.saved_tensors
        flat = index.reshape(-1)
        w_grad = None
        if ctx.needs_input_grad[2]:
            corners = table.index_select(0, flat).reshape(*index.shape, table.shape[1])
            w_grad = (corners * grad[None]).sum(dim=-1)
        if not ctx.needs_input_grad[0]:
            return None, None, w_grad
        if grad.device.type != "cpu":
            table_grad = grad.new_zeros(ctx.rows, grad.shape[1])
            table_grad.index_add_(0, flat, (w[..., None] * grad[None]).reshape(-1, grad.shape[1]))
            return table_grad, None, w_grad
        columns = [torch.bincount(flat, weights=(w * grad[:, f]).reshape(-1), minlength=ctx.rows) for f in range(grad.shape[1])]
        return torch.stack(columns, dim=1).to(grad.dtype), None, w_grad


def sh_encoding(directions: Tensor) -> Tensor:
    """Degree-3 real SH basis (16 values) of unit ``directions [P, 3]``."""
    return sh_bases(3, directions)


class PositionalEncoding(nn.Module):
    """``[x, sin(2^k x), cos(2^k x)]`` for ``k < frequencies`` (vanilla NeRF)."""

    def __init__(self, frequencies: int, include_input: bool = True) -> None:
        super().__init__()
        self.include_input = include_input
        self.register_buffer("scales", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.frequency_limit = 1.0  # FreeNeRF-style annealing: see frequency_mask

    def output_dim(self, input_dim: int = 3) -> int:
        return input_dim * (2 * len(self.scales) + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        xb = x[..., None, :] * self.scales[:, None]  # [..., frequencies, 3]
        parts = [torch.sin(xb), torch.cos(xb)]
        if self.frequency_limit < 1.0:
            mask = frequency_mask(len(self.scales), self.frequency_limit).to(x)[:, None]
            parts = [part * mask for part in parts]
        parts = [part.flatten(-2) for part in parts]
        return torch.cat(([x] if self.include_input else []) + parts, dim=-1)
