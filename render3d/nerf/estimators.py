"""Where a NeRF evaluates its field along each ray: sampler objects in nerfacc's estimator pattern.

Every estimator is an ``nn.Module`` (its parameters, if any, are trained with the
field's: the method's optimiser collects all of the model's parameters) with one
interface:

- ``update(step, field)``: refresh its own state before a training step (an occupancy
  grid from the field's density, at its own cadence);
- ``render(field, origins, dirs, background, stratified)``: place samples and volume-render
  them into a :class:`~render3d.nerf.render.RayBundleOutput`;
- ``losses(output, target)``: its auxiliary losses (the coarse pass of hierarchical
  sampling; a proposal network's interlevel loss would go here);
- ``step_size``: the spacing of its samples (sets the default mesh density threshold);
- ``preview()``: a cheaper estimator sharing its state, for the viewer's frames while the
  camera moves (fewer samples, rays stopped sooner).

A new sampler (e.g. proposal networks) is a new class here and a config choice; the
Trainer and the method do not change.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.nerf.field import SceneBox
from render3d.nerf.render import RayBundleOutput, render_dense, render_front_to_back
from render3d.nerf.sampler import OccupancyGrid, drop_occluded, march_uniform, sample_pdf

# preview renders stop a ray once less than this fraction of the light still gets through
PREVIEW_EPS = 1e-2


class RayEstimator(nn.Module):
    """Base class: no state to update and no auxiliary losses."""

    step_size: float
    update_every: int = 1  # steps between refreshes of the state (see update)

    def update(self, step: int, field: nn.Module) -> None:
        """Refresh internal state before training step ``step``."""

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               jitter: Optional[Tensor] = None) -> RayBundleOutput:
        """Volume-render rays; ``stratified`` jitters the samples (by ``jitter [R, 1]`` in [0, 1) when given)."""
        raise NotImplementedError

    def losses(self, output: RayBundleOutput, target: Tensor) -> dict[str, Tensor]:
        """Auxiliary losses of this sampler for a training batch (``target`` colours ``[R, 3]``)."""
        return {}

    def preview(self) -> "RayEstimator":
        """A cheaper estimator sharing this one's state, for coarse renders (itself unless a subclass knows better)."""
        return self


class GridEstimator(RayEstimator):
    """Our occupancy grid and uniform marcher (pure PyTorch, any device, bounded or contracted scenes),
    with nerfacc's early ray termination (eps 1e-4).

    Training evaluates a gradient-free density pass to find the samples to drop, then the
    field with gradients on the rest; without gradients (rendering) it marches front to
    back instead and evaluates each sample once.
    """

    def __init__(self, grid: OccupancyGrid, near: float, far: float, samples_per_ray: int, early_stop_eps: float = 1e-4,
                 update_every: int = 16, warmup_steps: int = 256) -> None:
        super().__init__()
        self.grid = grid
        self.near, self.far, self.samples_per_ray = near, far, samples_per_ray
        self.early_stop_eps = early_stop_eps
        self.update_every, self.warmup_steps = update_every, warmup_steps

    @property
    def step_size(self) -> float:  # type: ignore[override]
        if self.grid.box.contracted:
            return (self.far - self.near) / self.samples_per_ray
        aabb = self.grid.box.aabb
        return float((aabb[1] - aabb[0]).norm()) / self.samples_per_ray

    def preview(self) -> "GridEstimator":
        """The same grid, marched with half the samples, stopping rays at transmittance ``PREVIEW_EPS``."""
        return GridEstimator(self.grid, self.near, self.far, max(self.samples_per_ray // 2, 1), max(self.early_stop_eps, PREVIEW_EPS))

    def update(self, step: int, field: nn.Module) -> None:
        """Refresh the occupancy grid every ``update_every`` steps."""
        if step % self.update_every == 0:
            self.grid.update(step, field.density, self.step_size, warmup_steps=self.warmup_steps)

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               jitter: Optional[Tensor] = None) -> RayBundleOutput:
        s = march_uniform(origins, dirs, self.near, self.far, self.samples_per_ray, self.grid, stratified, jitter)
        if not torch.is_grad_enabled():
            return render_front_to_back(field, origins, dirs, s, background, max(self.early_stop_eps, 0.0))
        if self.early_stop_eps > 0:
            s = drop_occluded(field.density, origins, dirs, s, self.early_stop_eps)
        return render_dense(field, origins, dirs, s.t_starts, s.t_ends, s.valid, background)[0]


class NerfaccGridEstimator(RayEstimator):
    """nerfacc's ``OccGridEstimator`` (CUDA): packed samples with early termination, bounded scenes."""

    def __init__(self, aabb: Tensor, near: float, far: float, samples_per_ray: int, resolution: int,
                 update_every: int = 16, warmup_steps: int = 256) -> None:
        super().__init__()
        from nerfacc import OccGridEstimator

        self.estimator = OccGridEstimator(roi_aabb=aabb.reshape(-1), resolution=resolution, levels=1)
        self.near, self.far = near, far
        self.step_size = float((aabb[1] - aabb[0]).norm()) / samples_per_ray
        self.update_every, self.warmup_steps = update_every, warmup_steps

    def update(self, step: int, field: nn.Module) -> None:
        self.estimator.update_every_n_steps(
            step, occ_eval_fn=lambda x: field.density(x) * self.step_size, occ_thre=1e-2, n=self.update_every,
            warmup_steps=self.warmup_steps,
        )

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               jitter: Optional[Tensor] = None) -> RayBundleOutput:
        """nerfacc draws its own stratification (``jitter`` is not used)."""
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
        return RayBundleOutput(colors, opacities, depths, int(ray_indices.numel()))  # nerfacc's depths are expected depths


class _BoxOnly:
    """An occupancy-free stand-in for :class:`OccupancyGrid`: clips rays to the box, keeps every sample."""

    def __init__(self, box: SceneBox) -> None:
        self.box = box

    def occupied(self, points: Tensor) -> Tensor:
        return torch.ones_like(points[:, 0], dtype=torch.bool)


class HierarchicalEstimator(RayEstimator):
    """Vanilla NeRF's sampling: stratified coarse samples, then importance samples from their weights.

    One field serves both passes; the coarse pass is supervised too (:meth:`losses`), as in the paper.
    """

    def __init__(self, near: float, far: float, coarse: int, fine: int) -> None:
        super().__init__()
        self.near, self.far, self.coarse, self.fine = near, far, coarse, fine

    @property
    def step_size(self) -> float:  # type: ignore[override]
        """Spacing of the coarse samples (sets the default mesh density threshold)."""
        return (self.far - self.near) / self.coarse

    def preview(self) -> "HierarchicalEstimator":
        """Half the coarse and half the fine samples."""
        return HierarchicalEstimator(self.near, self.far, max(self.coarse // 2, 1), max(self.fine // 2, 1))

    def render(self, field: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               jitter: Optional[Tensor] = None) -> RayBundleOutput:
        """The fine pass; its ``extras["coarse_rgb"]`` holds the coarse pass's colours."""
        s = march_uniform(origins, dirs, self.near, self.far, self.coarse, _BoxOnly(field.box), stratified, jitter)
        coarse, weights = render_dense(field, origins, dirs, s.t_starts, s.t_ends, s.valid, background)
        bins = torch.cat([s.t_starts, s.t_ends[:, -1:]], dim=-1)
        fine_t = sample_pdf(bins, weights, self.fine, stratified)
        t = torch.sort(torch.cat([bins, fine_t], dim=-1), dim=-1).values
        valid = (t[:, 1:] > t[:, :-1]) & s.valid.any(-1, keepdim=True)
        fine, _ = render_dense(field, origins, dirs, t[:, :-1].contiguous(), t[:, 1:].contiguous(), valid, background)
        fine.num_samples += coarse.num_samples
        fine.extras["coarse_rgb"] = coarse.rgb
        return fine

    def losses(self, output: RayBundleOutput, target: Tensor) -> dict[str, Tensor]:
        return {"coarse_rgb": F.mse_loss(output.extras["coarse_rgb"], target)}
