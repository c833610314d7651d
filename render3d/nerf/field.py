"""Radiance fields: the Instant-NGP-style hash-grid field and the vanilla NeRF MLP.

Both map world points (and view directions) to density and colour. Points are first
mapped into the field's unit cube: a bounded scene by its box, an unbounded one by the
mip-NeRF 360 contraction of the box-normalised coordinates (everything outside the box
is squeezed into the shell between radius 1 and 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.nerf.encoding import HashEncoding, PositionalEncoding, sh_encoding


class _TruncExp(torch.autograd.Function):
    """``exp`` whose gradient is clamped (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


def contract(x: Tensor) -> Tensor:
    """mip-NeRF 360 contraction: identity inside the unit ball, ``(2 - 1/|x|) x/|x|`` outside."""
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.where(norm <= 1.0, x, (2.0 - 1.0 / norm) * x / norm)


class SceneBox(nn.Module):
    """Maps world points into ``[0, 1]^3`` for a field (bounded box or contracted space)."""

    def __init__(self, aabb: Tensor, contracted: bool) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.float().clone())
        self.contracted = contracted

    def to_unit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unit-cube coordinates ``[P, 3]`` and a mask of points inside the field's domain."""
        lo, hi = self.aabb[0], self.aabb[1]
        if self.contracted:
            centered = (x - 0.5 * (lo + hi)) / (0.5 * (hi - lo))  # the box becomes [-1, 1]^3
            return (contract(centered) + 2.0) / 4.0, torch.ones_like(x[:, 0], dtype=torch.bool)
        unit = (x - lo) / (hi - lo)
        return unit, ((unit >= 0) & (unit <= 1)).all(-1)


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``."""
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*mods)


class HashField(nn.Module):
    """Instant-NGP-style field: hash grid -> small density MLP -> SH-encoded view -> colour MLP."""

    def __init__(
        self,
        box: SceneBox,
        levels: int = 12,
        features: int = 2,
        log2_table_size: int = 16,
        base_resolution: int = 16,
        max_resolution: int = 1024,
        hidden: int = 64,
        geo_features: int = 15,
    ) -> None:
        super().__init__()
        self.box = box
        self.encoding = HashEncoding(levels, features, log2_table_size, base_resolution, max_resolution)
        self.density_net = mlp(self.encoding.output_dim, hidden, 1, 1 + geo_features)
        self.color_net = mlp(16 + geo_features, hidden, 2, 3)

    def _base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        unit, inside = self.box.to_unit(x)
        h = self.density_net(self.encoding(unit))
        sigma = trunc_exp(h[:, 0] - 1.0) * inside
        return sigma, h[:, 1:]

    def density(self, x: Tensor) -> Tensor:
        """Volume density ``[P]`` at world points ``x [P, 3]``."""
        return self._base(x)[0]

    def set_frequency_limit(self, fraction: float) -> None:
        """Use only the coarsest ``fraction`` of the hash-grid levels (FreeNeRF's annealing)."""
        self.encoding.frequency_limit = float(fraction)

    def forward(self, x: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Colour ``[P, 3]`` and density ``[P]`` at points seen along unit ``directions``."""
        sigma, geo = self._base(x)
        rgb = torch.sigmoid(self.color_net(torch.cat([sh_encoding(directions), geo], dim=-1)))
        return rgb, sigma


class VanillaField(nn.Module):
    """The original NeRF MLP: positional encodings, a skip connection, density then colour."""

    def __init__(self, box: SceneBox, pos_frequencies: int = 10, dir_frequencies: int = 4, hidden: int = 256, layers: int = 8) -> None:
        super().__init__()
        self.box = box
        self.pos_enc = PositionalEncoding(pos_frequencies)
        self.dir_enc = PositionalEncoding(dir_frequencies)
        in_dim = self.pos_enc.output_dim()
        self.skip = layers // 2
        self.layers = nn.ModuleList(
            [nn.Linear(in_dim if i == 0 else hidden + (in_dim if i == self.skip else 0), hidden) for i in range(layers)]
        )
        self.sigma_head = nn.Linear(hidden, 1)
        self.feature = nn.Linear(hidden, hidden)
        self.color_head = mlp(hidden + self.dir_enc.output_dim(), hidden // 2, 1, 3)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        unit, inside = self.box.to_unit(x)
        enc = self.pos_enc(unit * 2.0 - 1.0)
        h = enc
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, enc], dim=-1)
            h = F.relu(layer(h))
        return h, F.relu(self.sigma_head(h)[:, 0]) * inside, inside

    def density(self, x: Tensor) -> Tensor:
        return self._trunk(x)[1]

    def set_frequency_limit(self, fraction: float) -> None:
        """Use only the lowest ``fraction`` of the positional-encoding frequencies (FreeNeRF)."""
        self.pos_enc.frequency_limit = float(fraction)

    def forward(self, x: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        h, sigma, _ = self._trunk(x)
        rgb = torch.sigmoid(self.color_head(torch.cat([self.feature(h), self.dir_enc(directions)], dim=-1)))
        return rgb, sigma
