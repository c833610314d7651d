"""Where to evaluate the field along each ray.

- :class:`OccupancyGrid`: a binary grid over the field's unit cube, refreshed from the
  field's density with nerfacc's ``OccGridEstimator`` rule (every ``n`` steps, EMA of the
  opacity ``density * step`` with decay 0.95, threshold ``min(mean, occ_thre)``; all
  cells during warm-up, then a quarter of the cells plus the occupied ones).
- :func:`march_uniform`: the pure-PyTorch ray marcher: evenly spaced samples (in distance
  for bounded scenes, in disparity for contracted ones), samples in empty cells dropped.
- :func:`drop_occluded`: nerfacc's early ray termination: a gradient-free density pass,
  and samples whose transmittance is already below ``eps`` are dropped.
  Dense ``[rays, samples]`` layout with a validity mask, which nerfacc renders on any device.
- :func:`sample_pdf`: inverse-transform sampling for vanilla NeRF's coarse-to-fine pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from render3d.nerf.field import SceneBox


@dataclass
class RaySamples:
    """Dense samples: ``t_starts``, ``t_ends`` ``[R, S]`` and ``valid`` ``[R, S]`` (False = skip)."""

    t_starts: Tensor
    t_ends: Tensor
    valid: Tensor

    @property
    def midpoints(self) -> Tensor:
        return 0.5 * (self.t_starts + self.t_ends)


class OccupancyGrid(nn.Module):
    """Binary occupancy of the field's unit cube at ``resolution^3``."""

    def __init__(self, box: SceneBox, resolution: int = 64) -> None:
        super().__init__()
        self.box = box
        self.resolution = resolution
        self.register_buffer("ema", torch.zeros(resolution**3))
        self.register_buffer("binary", torch.ones(resolution, resolution, resolution, dtype=torch.bool))
        idx = torch.arange(resolution)
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("cells", grid, persistent=False)

    def unit_to_world(self, unit: Tensor) -> Tensor:
        """Inverse of the box mapping (bounded boxes; contracted space is inverted analytically)."""
        lo, hi = self.box.aabb[0], self.box.aabb[1]
        if not self.box.contracted:
            return lo + unit * (hi - lo)
        c = unit * 4.0 - 2.0
        norm = c.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        uncontracted = torch.where(norm <= 1.0, c, c / norm / (2.0 - norm).clamp_min(1e-3))
        return 0.5 * (lo + hi) + uncontracted * 0.5 * (hi - lo)

    @torch.no_grad()
    def update(self, step: int, density_fn: Callable[[Tensor], Tensor], step_size: float, warmup_steps: int = 256,
               threshold: float = 0.01, decay: float = 0.95, generator: Optional[torch.Generator] = None) -> None:
        """Refresh the grid from ``density_fn`` (world points -> density)."""
        n = self.resolution**3
        if step < warmup_steps:
            cells = torch.arange(n, device=self.ema.device)
        else:
            random = torch.randint(0, n, (n // 4,), device=self.ema.device, generator=generator)
            # unique: duplicate indices would make the EMA write below order-dependent
            cells = torch.unique(torch.cat([random, self.binary.reshape(-1).nonzero().squeeze(-1)]))
        jitter = torch.rand(len(cells), 3, device=self.ema.device, generator=generator)
        unit = (self.cells[cells].float() + jitter) / self.resolution
        occ = torch.cat([density_fn(chunk) for chunk in self.unit_to_world(unit).split(65536)]) * step_size
        self.ema[cells] = torch.maximum(self.ema[cells] * decay, occ)
        self.binary = (self.ema > min(self.ema.mean().item(), threshold)).reshape(self.binary.shape)

    def occupied(self, points: Tensor) -> Tensor:
        """True for world points in an occupied cell (and inside the field's domain)."""
        unit, inside = self.box.to_unit(points)
        idx = (unit * self.resolution).long().clamp(0, self.resolution - 1)
        return self.binary[idx[..., 0], idx[..., 1], idx[..., 2]] & inside


def ray_box_intersect(origins: Tensor, dirs: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances ``[R]`` of rays through a box (exit < entry: a miss)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


def march_uniform(
    origins: Tensor,
    dirs: Tensor,
    near: float,
    far: float,
    num_samples: int,
    grid: Optional[OccupancyGrid],
    stratified: bool,
    jitter: Optional[Tensor] = None,
) -> RaySamples:
    """``num_samples`` evenly spaced samples per ray between ``near`` and ``far``.

    ``stratified`` shifts each ray's samples by a random fraction of a step: ``jitter [R, 1]``
    in [0, 1) when given (drawn with the batch), else drawn from torch's global stream.

    Bounded boxes: spacing in distance, clipped to the ray's entry/exit of the box.
    Contracted scenes: spacing in disparity (``1/t``) from where the ray enters the
    uncontracted core (``near`` if it misses it) to ``far``, so far regions get fewer samples.
    Samples whose midpoint falls in an empty occupancy cell are marked invalid.
    """
    r = origins.shape[0]
    u = torch.linspace(0.0, 1.0, num_samples + 1, device=origins.device)
    if stratified:
        shift = jitter if jitter is not None else torch.rand(r, 1, device=origins.device)
        u = u[None, :].expand(r, -1) + shift / num_samples
        u = u.clamp(max=1.0)
    else:
        u = u[None, :].expand(r, -1)
    if grid is not None and grid.box.contracted:
        # from where the ray enters the uncontracted core (the camera is usually outside it),
        # or from near when it misses the core; evenly spaced in disparity out to far
        entry, exit_ = ray_box_intersect(origins, dirs, grid.box.aabb)
        start = torch.where(exit_ > entry, entry, torch.zeros_like(entry)).clamp(near, far)
        end = torch.full((r,), far, device=origins.device)
        t = 1.0 / (u / end[:, None] + (1.0 - u) / start[:, None])
    else:
        aabb = grid.box.aabb if grid is not None else None
        start, end = (ray_box_intersect(origins, dirs, aabb) if aabb is not None else (torch.zeros(r), torch.full((r,), far)))
        start, end = start.clamp(min=near), end.clamp(max=far)
        t = start[:, None] + (end - start).clamp_min(0)[:, None] * u
    t_starts, t_ends = t[:, :-1], t[:, 1:]
    valid = (end > start)[:, None] & (t_ends > t_starts)
    if grid is not None:
        mids = origins[:, None, :] + dirs[:, None, :] * (0.5 * (t_starts + t_ends))[..., None]
        valid = valid & grid.occupied(mids.reshape(-1, 3)).reshape(valid.shape)
    return RaySamples(t_starts.contiguous(), t_ends.contiguous(), valid)


def sample_pdf(bins: Tensor, weights: Tensor, num_samples: int, stratified: bool, generator: Optional[torch.Generator] = None) -> Tensor:
    """Inverse-transform samples ``[R, num_samples]`` from piecewise-constant ``weights [R, B]`` on ``bins [R, B+1]``."""
    weights = weights.detach() + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if stratified:
        u = (torch.arange(num_samples, device=bins.device) + torch.rand(bins.shape[0], num_samples, device=bins.device, generator=generator)) / num_samples
    else:
        u = ((torch.arange(num_samples, device=bins.device) + 0.5) / num_samples).expand(bins.shape[0], -1)
    idx = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    bin_lo, bin_hi = bins.gather(-1, idx - 1), bins.gather(-1, idx)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-8)).clamp(0, 1)
    return bin_lo + frac * (bin_hi - bin_lo)


@torch.no_grad()
def drop_occluded(density_fn: Callable[[Tensor], Tensor], origins: Tensor, dirs: Tensor, samples: RaySamples, eps: float) -> RaySamples:
    """Mark samples behind opaque matter invalid (transmittance ``<= eps``), from a no-grad density pass."""
    ray_ids, sample_ids = samples.valid.nonzero(as_tuple=True)
    if ray_ids.numel() == 0:
        return samples
    mids = samples.midpoints[ray_ids, sample_ids]
    sigma = torch.zeros_like(samples.t_starts)
    sigma[ray_ids, sample_ids] = density_fn(origins[ray_ids] + dirs[ray_ids] * mids[:, None])
    tau = sigma * (samples.t_ends - samples.t_starts)
    transmittance = torch.exp(-(torch.cumsum(tau, dim=-1) - tau))
    return RaySamples(samples.t_starts, samples.t_ends, samples.valid & (transmittance > eps))
