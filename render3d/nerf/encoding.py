"""Input encodings for NeRF fields, in pure PyTorch.

- :class:`HashEncoding`: Instant-NGP's multiresolution hash grid (Müller et al. 2022).
  Each level's 8 cell corners are hashed (or indexed densely where the level fits in its
  table) and blended trilinearly; all levels are gathered with one ``index_select``
  (whose backward, an ``index_add``, is several times faster on CPU than ``embedding_bag``'s).
- :func:`sh_encoding`: real spherical harmonics of view directions (degree 4, 16 values).
- :class:`PositionalEncoding`: NeRF's sin/cos frequency encoding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

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
    """

    def __init__(
        self, levels: int = 16, features: int = 2, log2_table_size: int = 19, base_resolution: int = 16, max_resolution: int = 2048
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
        self.embeddings = nn.Parameter(torch.empty(offsets[-1], features).uniform_(-1e-4, 1e-4))

    @property
    def output_dim(self) -> int:
        return self.levels * self.features

    def corner_indices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows ``[P, L, 8]`` and trilinear weights ``[P, L, 8]`` for points ``x [P, 3]``.

        Built per axis (low / high corner) and combined by broadcasting, so no
        ``[P, L, 8, 3]`` tensor is ever materialised.
        """
        scaled = x[:, None, :] * self.resolutions[None, :, None].to(x.dtype)  # [P, L, 3]
        cell = torch.floor(scaled)
        frac = scaled - cell
        lo = cell.long()
        axis = [torch.stack([lo[..., a], lo[..., a] + 1], dim=-1) for a in range(3)]  # 3 x [P, L, 2]
        weight = [torch.stack([1.0 - frac[..., a], frac[..., a]], dim=-1) for a in range(3)]
        w = weight[0][..., :, None, None] * weight[1][..., None, :, None] * weight[2][..., None, None, :]
        stride = (self.resolutions + 1)[None, :, None]
        dense_index = axis[0][..., :, None, None] + (stride * axis[1])[..., None, :, None] + (stride * stride * axis[2])[..., None, None, :]
        hashed = (axis[0] * PRIMES[0])[..., :, None, None] ^ (axis[1] * PRIMES[1])[..., None, :, None] ^ (axis[2] * PRIMES[2])[..., None, None, :]
        dense = self.dense[None, :, None, None, None]
        index = torch.where(dense, dense_index, hashed) % self.sizes[None, :, None, None, None]
        index = index + self.offsets[None, :, None, None, None]
        p, levels = x.shape[0], self.levels
        return index.reshape(p, levels, 8), w.reshape(p, levels, 8)

    def forward(self, x: Tensor) -> Tensor:
        """Features ``[P, levels * features]`` of points ``x [P, 3]`` in [0, 1]."""
        x = x.clamp(0.0, 1.0)
        index, w = self.corner_indices(x)
        p = x.shape[0]
        corners = self.embeddings.index_select(0, index.reshape(-1)).reshape(p, self.levels, 8, self.features)
        return (corners * w[..., None]).sum(dim=2).reshape(p, self.levels * self.features)


def sh_encoding(directions: Tensor) -> Tensor:
    """Degree-3 real SH basis (16 values) of unit ``directions [P, 3]``."""
    return sh_bases(3, directions)


class PositionalEncoding(nn.Module):
    """``[x, sin(2^k x), cos(2^k x)]`` for ``k < frequencies`` (vanilla NeRF)."""

    def __init__(self, frequencies: int, include_input: bool = True) -> None:
        super().__init__()
        self.include_input = include_input
        self.register_buffer("scales", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)

    def output_dim(self, input_dim: int = 3) -> int:
        return input_dim * (2 * len(self.scales) + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        xb = (x[..., None, :] * self.scales[:, None]).flatten(-2)
        parts = [torch.sin(xb), torch.cos(xb)]
        return torch.cat(([x] if self.include_input else []) + parts, dim=-1)
