"""The renderable NeRF: a field plus its ray estimator and background."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from render3d.cameras import Cameras
from render3d.nerf.estimators import RayEstimator
from render3d.nerf.render import RayBundleOutput
from render3d.pose_correction import move_rays
from render3d.protocol import RenderOutput


class NerfModel(nn.Module):
    """A field plus its estimator; implements :class:`render3d.protocol.SceneModel`,
    :class:`~render3d.protocol.Meshable` (density + marching cubes), :class:`~render3d.protocol.Bounded`,
    :class:`~render3d.protocol.HasDensity`, :class:`~render3d.protocol.FrequencyLimited`,
    :class:`~render3d.protocol.Previewable` and :class:`~render3d.protocol.PoseDifferentiable`."""

    def __init__(self, field_module: nn.Module, estimator: RayEstimator, background: Tensor, render_chunk: int) -> None:
        super().__init__()
        self.field = field_module
        self.estimator = estimator
        self.register_buffer("background", background.float().clone())
        self.render_chunk = render_chunk

    def render_rays(self, origins: Tensor, dirs: Tensor, background: Optional[Tensor] = None, stratified: bool = False,
                    jitter: Optional[Tensor] = None, estimator: Optional[RayEstimator] = None) -> RayBundleOutput:
        """Render rays on ``background`` (``[3]`` or per ray ``[R, 3]``; the scene's when omitted), with the
        model's estimator or ``estimator`` (e.g. its :meth:`~RayEstimator.preview`)."""
        background = self.background if background is None else background
        return (estimator or self.estimator).render(self.field, origins, dirs, background, stratified, jitter)

    def render_ray_set(self, origins: Tensor, dirs: Tensor, estimator: Optional[RayEstimator] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Colour ``[R, 3]``, opacity ``[R, 1]`` and distance ``[R, 1]`` of rays ``origins, dirs [R, 3]``, rendered in
        chunks of ``render_chunk`` rays (with gradients when they are enabled)."""
        chunk = self.render_chunk
        parts = [self.render_rays(origins[s : s + chunk], dirs[s : s + chunk], estimator=estimator)
                 for s in range(0, len(origins), chunk)]
        return (torch.cat([p.rgb for p in parts]), torch.cat([p.alpha for p in parts]),
                torch.cat([p.distance for p in parts]))

    def render_camera(self, cameras: Cameras, index: int, estimator: Optional[RayEstimator] = None,
                      motion: Optional[Tensor] = None, pixels: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Colour ``[H, W, 3]``, z-depth ``[H, W, 1]`` (of the visible matter) and opacity ``[H, W, 1]`` of one camera
        (with gradients when they are enabled); ``motion [4, 4]`` carries its rays to a corrected camera's
        (:func:`render3d.pose_correction.camera_motions`); with ``pixels [N]`` (flat indices) only those: ``[N, ...]``."""
        origins, dirs = cameras.generate_rays(index)
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        if pixels is not None:
            o, d = o[pixels], d[pixels]
        if motion is not None:
            o, d = move_rays(motion.to(o).expand(len(o), 4, 4), o, d)
        rgb, alpha, distance = self.render_ray_set(o, d, estimator)
        z = distance * (d @ cameras.c2w[index, :3, 2])[:, None]
        if pixels is not None:
            return rgb, z, alpha
        shape = (cameras.height, cameras.width)
        return rgb.reshape(*shape, 3), z.reshape(*shape, 1), alpha.reshape(*shape, 1)

    @torch.no_grad()
    def render(self, cameras: Cameras, mode: str = "rgb", estimator: Optional[RayEstimator] = None) -> RenderOutput:
        """Render every camera; depth is z along the camera axis (0 where nearly empty)."""
        cams = cameras.to(self.background.device)
        views = [self.render_camera(cams, i, estimator) for i in range(len(cams))]
        rgb, depth, alpha = (torch.stack(parts) for parts in zip(*views))
        return RenderOutput(rgb=rgb.clamp(0, 1), depth=depth * (alpha > 1e-3), alpha=alpha)

    #: a pose fit compares a fixed random subset of each view's pixels (rays cost the same one by one)
    pose_fit_pixels = 8192

    def render_corrected(self, cameras: Cameras, world_transforms: Tensor, pixels: Optional[Tensor] = None) -> Tensor:
        """``rgb [C, H, W, 3]`` of ``cameras`` seeing the world moved by ``world_transforms [C, 4, 4]``, differentiable
        in them (the :class:`~render3d.protocol.PoseDifferentiable` capability: ``eval --refine-test-poses``); only the
        rays of ``pixels [N]`` (flat indices) where given: ``[C, N, 3]``."""
        cams = cameras.to(self.background.device)
        motions = torch.linalg.inv(world_transforms)  # the world moved by D is the camera moved by D⁻¹
        return torch.stack([self.render_camera(cams, i, motion=motions[i], pixels=pixels)[0] for i in range(len(cams))])

    def density(self, points: Tensor) -> Tensor:
        """Volume density ``[P]`` at world points (the :class:`~render3d.protocol.HasDensity` capability)."""
        return self.field.density(points)

    def set_frequency_limit(self, fraction: float) -> None:
        """Limit the field's encoding to its lowest ``fraction`` of levels / frequencies (FreeNeRF)."""
        self.field.set_frequency_limit(fraction)

    def render_preview(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """A coarser render with the estimator's :meth:`~RayEstimator.preview` (the :class:`~render3d.protocol.Previewable`
        capability: the viewer's frames while the camera moves)."""
        return self.render(cameras, mode, self.estimator.preview())

    def content_bounds(self) -> Tensor:
        """The field's box (for contracted scenes, the uncontracted core)."""
        return self.field.box.aabb.detach()

    def extract_mesh(self, resolution: int = 128) -> Any:
        """A coloured mesh of the density field (see :func:`render3d.nerf.mesh.extract_mesh`)."""
        from render3d.nerf.mesh import extract_mesh

        return extract_mesh(self.field, self.estimator.step_size, resolution=resolution)
