"""Render Gaussians with either backend: gsplat's CUDA ``rasterization`` or our torch rasteriser.

Both take activated parameters (linear scales, opacities in [0, 1]) and SH coefficients,
and return ``(colors [C, H, W, 3], depth [C, H, W, 1], alphas [C, H, W, 1], info)`` where
``info`` carries what gsplat's densification strategies read (``means2d``, ``radii``,
``width``, ``height``, ``n_cameras`` and, when packed, ``gaussian_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.splat.project import covariance_3d, project_gaussians
from render3d.splat.rasterize_cpu import rasterize_to_pixels
from render3d.splat.sh import eval_sh


@dataclass
class RasterSettings:
    """Options shared by both backends."""

    near_plane: float = 0.01
    far_plane: float = 1e10
    eps2d: float = 0.3
    tile_size: int = 16
    packed: bool = True  # cuda only; strategies must be told the same
    absgrad: bool = False  # cuda only


def sh_colors(means: Tensor, coeffs: Tensor, sh_degree: int, camera_centers: Tensor) -> Tensor:
    """Per-camera Gaussian colours ``[C, N, 3]`` from SH coefficients ``[N, K, 3]``."""
    dirs = means[None] - camera_centers[:, None]
    return torch.clamp_min(eval_sh(sh_degree, dirs, coeffs[None].expand(dirs.shape[0], -1, -1, -1)) + 0.5, 0.0)


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    coeffs: Tensor,
    sh_degree: int,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    settings: RasterSettings,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Pure-PyTorch rendering of ``C`` cameras (colour, expected depth, alpha, info)."""
    covars = covariance_3d(quats, scales)
    proj = project_gaussians(
        means, covars, viewmats, Ks, width, height, settings.eps2d, settings.near_plane, settings.far_plane
    )
    centers = torch.linalg.inv(viewmats)[:, :3, 3]
    colors = sh_colors(means, coeffs, sh_degree, centers)
    images, depths, alphas = [], [], []
    for c in range(viewmats.shape[0]):
        feats = torch.cat([colors[c], proj.depths[c, :, None]], dim=-1)
        img, alpha = rasterize_to_pixels(
            proj.means2d[c], proj.conics[c], feats, opacities, proj.depths[c], proj.radii[c], width, height
        )
        images.append(img[..., :3])
        depths.append(img[..., 3:4] / alpha.clamp_min(1e-10))
        alphas.append(alpha)
    info = {
        "means2d": proj.means2d,
        "radii": proj.radii,
        "depths": proj.depths,
        "conics": proj.conics,
        "width": width,
        "height": height,
        "n_cameras": viewmats.shape[0],
        "packed": False,
        "gaussian_ids": None,
    }
    return torch.stack(images), torch.stack(depths), torch.stack(alphas), info


def rasterize_cuda(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    coeffs: Tensor,
    sh_degree: int,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    settings: RasterSettings,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """gsplat's fused CUDA rasteriser with the same inputs and outputs as :func:`rasterize_torch`."""
    from gsplat import rasterization

    render, alphas, info = rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=coeffs,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=settings.near_plane,
        far_plane=settings.far_plane,
        eps2d=settings.eps2d,
        sh_degree=sh_degree,
        packed=settings.packed,
        tile_size=settings.tile_size,
        absgrad=settings.absgrad,
        render_mode="RGB+ED",
    )
    info["packed"] = settings.packed
    return render[..., :3], render[..., 3:4], alphas, info


def rasterize(
    backend: str,
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    coeffs: Tensor,
    sh_degree: int,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    settings: Optional[RasterSettings] = None,
    background: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Render with ``backend`` (``cuda`` or ``torch``), compositing on ``background`` [3] if given.

    Args:
        means ``[N, 3]``, quats ``[N, 4]`` (w, x, y, z), scales ``[N, 3]`` (linear),
        opacities ``[N]`` in [0, 1], coeffs ``[N, K, 3]`` SH, viewmats ``[C, 4, 4]``, Ks ``[C, 3, 3]``.
    """
    settings = settings or RasterSettings()
    fn = rasterize_cuda if backend == "cuda" else rasterize_torch
    colors, depth, alphas, info = fn(
        means, quats, scales, opacities, coeffs, sh_degree, viewmats, Ks, width, height, settings
    )
    if background is not None:
        colors = colors + (1.0 - alphas) * background.to(colors)
    return colors, depth, alphas, info
