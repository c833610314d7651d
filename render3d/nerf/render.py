"""Volume rendering of a field along rays, through nerfacc.

Two marchers with one interface (``update`` the occupancy, ``render`` a batch of rays):
:class:`TorchMarcher` (our occupancy grid + dense samples; runs on any device, bounded or
contracted scenes) and :class:`NerfaccMarcher` (nerfacc's CUDA ``OccGridEstimator`` with
packed samples and early ray termination; bounded scenes on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from render3d.nerf.sampler import OccupancyGrid, RaySamples, drop_occluded, march_uniform


@dataclass
class RayBundleOutput:
    """Per-ray results: rgb ``[R, 3]``, opacity ``[R, 1]``, distance along the ray ``[R, 1]``, sample count."""

    rgb: Tensor
    alpha: Tensor
    distance: Tensor
    num_samples: int


def render_dense(field: nn.Module, origins: Tensor, dirs: Tensor, t_starts: Tensor, t_ends: Tensor, valid: Tensor,
                 background: Optional[Tensor]) -> tuple[RayBundleOutput, Tensor]:
    """Evaluate ``field`` only at ``valid`` samples of a dense ``[R, S]`` layout and composite.

    Returns the output and the per-sample weights ``[R, S]`` (used by coarse-to-fine sampling).
    """
    import nerfacc

    ray_ids, sample_ids = valid.nonzero(as_tuple=True)
    mids = 0.5 * (t_starts + t_ends)[ray_ids, sample_ids]
    rgb_v, sigma_v = field(origins[ray_ids] + dirs[ray_ids] * mids[:, None], dirs[ray_ids])
    sigma = torch.zeros_like(t_starts).index_put((ray_ids, sample_ids), sigma_v)
    rgb = torch.zeros(*t_starts.shape, 3, device=t_starts.device, dtype=rgb_v.dtype).index_put((ray_ids, sample_ids), rgb_v)
    colors, opacities, depths, extras = nerfacc.rendering(
        t_starts, t_ends, rgb_sigma_fn=lambda *_: (rgb, sigma), render_bkgd=background
    )
    return RayBundleOutput(colors, opacities, depths, int(ray_ids.numel())), extras["weights"]


@torch.no_grad()
def render_front_to_back(field: nn.Module, origins: Tensor, dirs: Tensor, samples: RaySamples, background: Optional[Tensor],
                         eps: float = 1e-4, segment: int = 16) -> RayBundleOutput:
    """Inference rendering: march ``segment`` samples at a time, front to back, on rays still visible.

    Each sample is evaluated once (colour and density together) and a ray stops being
    evaluated once its transmittance falls to ``eps``, so no separate density pass is
    needed. Weights come from nerfacc with the transmittance carried in (``prefix_trans``).
    """
    import nerfacc

    r, total = samples.valid.shape
    device = origins.device
    color = torch.zeros(r, 3, device=device)
    opacity = torch.zeros(r, device=device)
    weighted_t = torch.zeros(r, device=device)
    transmittance = torch.ones(r, device=device)
    count = 0
    for start in range(0, total, segment):
        alive = (transmittance > eps).nonzero().squeeze(-1)
        valid = samples.valid[alive, start : start + segment]
        busy = valid.any(dim=1)  # rays with work in this segment
        if not bool(busy.any()):
            continue
        alive, valid = alive[busy], valid[busy]
        ray_ids, sample_ids = valid.nonzero(as_tuple=True)
        t0, t1 = samples.t_starts[alive, start : start + segment], samples.t_ends[alive, start : start + segment]
        mids = 0.5 * (t0 + t1)
        rays = alive[ray_ids]
        rgb_v, sigma_v = field(origins[rays] + dirs[rays] * mids[ray_ids, sample_ids, None], dirs[rays])
        sigma = torch.zeros_like(t0).index_put((ray_ids, sample_ids), sigma_v)
        rgb = torch.zeros(*t0.shape, 3, device=device, dtype=rgb_v.dtype).index_put((ray_ids, sample_ids), rgb_v)
        weights, _, _ = nerfacc.render_weight_from_density(t0, t1, sigma, prefix_trans=transmittance[alive, None])
        color[alive] += (weights[..., None] * rgb).sum(1)
        opacity[alive] += weights.sum(1)
        weighted_t[alive] += (weights * mids).sum(1)
        transmittance[alive] *= torch.exp(-(sigma * (t1 - t0)).sum(1))
        count += sigma_v.numel()
    opacity = opacity[:, None]
    distance = weighted_t[:, None] / opacity.clamp_min(torch.finfo(opacity.dtype).eps)
    if background is not None:
        color = color + background * (1.0 - opacity)
    return RayBundleOutput(color, opacity, distance, count)


class TorchMarcher(nn.Module):
    """Our occupancy grid and uniform marcher (pure PyTorch), with nerfacc's early termination (eps 1e-4).

    Training evaluates a gradient-free density pass to find the samples to drop, then the
    field with gradients on the rest; without gradients (rendering) it marches front to
    back instead and evaluates each sample once.
    """

    def __init__(self, grid: OccupancyGrid, near: float, far: float, samples_per_ray: int, early_stop_eps: float = 1e-4) -> None:
        super().__init__()
        self.grid = grid
        self.near, self.far, self.samples_per_ray = near, far, samples_per_ray
        self.early_stop_eps = early_stop_eps

    @property
    def step_size(self) -> float:
        if self.grid.box.contracted:
            return (self.far - self.near) / self.samples_per_ray
        aabb = self.grid.box.aabb
        return float((aabb[1] - aabb[0]).norm()) / self.samples_per_ray

    def update(self, step: int, field: nn.Module, warmup_steps: int, generator: Optional[torch.Generator] = None) -> None:
        self.grid.update(step, field.density, self.step_size, warmup_steps=warmup_steps, generator=generator)

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               generator: Optional[torch.Generator] = None) -> RayBundleOutput:
        s = march_uniform(origins, dirs, self.near, self.far, self.samples_per_ray, self.grid, stratified, generator)
        if not torch.is_grad_enabled():
            return render_front_to_back(field, origins, dirs, s, background, max(self.early_stop_eps, 0.0))
        if self.early_stop_eps > 0:
            s = drop_occluded(field.density, origins, dirs, s, self.early_stop_eps)
        return render_dense(field, origins, dirs, s.t_starts, s.t_ends, s.valid, background)[0]

    @property
    def occupancy(self) -> float:
        return self.grid.occupancy


class NerfaccMarcher(nn.Module):
    """nerfacc's ``OccGridEstimator`` (CUDA): packed samples with early termination."""

    def __init__(self, aabb: Tensor, near: float, far: float, samples_per_ray: int, resolution: int) -> None:
        super().__init__()
        from nerfacc import OccGridEstimator

        self.estimator = OccGridEstimator(roi_aabb=aabb.reshape(-1), resolution=resolution, levels=1)
        self.near, self.far = near, far
        self.step_size = float((aabb[1] - aabb[0]).norm()) / samples_per_ray

    def update(self, step: int, field: nn.Module, warmup_steps: int, generator: Optional[torch.Generator] = None) -> None:
        self.estimator.update_every_n_steps(
            step, occ_eval_fn=lambda x: field.density(x) * self.step_size, occ_thre=1e-2, n=1, warmup_steps=warmup_steps
        )

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               generator: Optional[torch.Generator] = None) -> RayBundleOutput:
        import nerfacc

        def sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            t = 0.5 * (t_starts + t_ends)
            return field.density(origins[ray_indices] + dirs[ray_indices] * t[:, None])

        def rgb_sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
            t = 0.5 * (t_starts + t_ends)
            return field(origins[ray_indices] + dirs[ray_indices] * t[:, None], dirs[ray_indices])

        ray_indices, t_starts, t_ends = self.estimator.sampling(
            origins, dirs, sigma_fn=sigma_fn, near_plane=self.near, far_plane=self.far,
            render_step_size=self.step_size, stratified=stratified,
        )
        colors, opacities, depths, _ = nerfacc.rendering(
            t_starts, t_ends, ray_indices, n_rays=origins.shape[0], rgb_sigma_fn=rgb_sigma_fn, render_bkgd=background
        )
        return RayBundleOutput(colors, opacities, depths, int(ray_indices.numel()))

    @property
    def occupancy(self) -> float:
        return float(self.estimator.binaries.float().mean())
