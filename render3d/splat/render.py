"""Render Gaussians with either backend: gsplat's CUDA ``rasterization`` or our torch rasteriser
(:mod:`render3d.splat.kernels`: project, colours, composite).

Both take activated parameters (linear scales, opacities in [0, 1]) and SH coefficients,
and return ``(colors [C, H, W, 3], depth [C, H, W, 1], alphas [C, H, W, 1], info)`` where
``info`` carries what gsplat's densification strategies read (``means2d``, ``radii``,
``width``, ``height``, ``n_cameras`` and, when packed, ``gaussian_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from render3d.cameras import qvec_to_rotmat
from render3d.splat.kernels import SplatKernels, splat_kernels
from render3d.splat.project import Projection
from render3d.splat.sh import sh_colors

#: ``color_fn(colors [C, N, 3], means [N, 3], camera_centers [C, 3]) -> colors [C, N, 3]`` (see :func:`rasterize`).
ColorFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class RasterSettings:
    """Options shared by both backends."""

    near_plane: float = 0.01
    far_plane: float = 1e10
    eps2d: float = 0.3
    tile_size: int = 16
    packed: bool = True  # cuda only; strategies must be told the same
    antialiased: bool = False  # Mip-Splatting's 2D filter: opacities compensated for the eps2d blur (gsplat's mode)


def gaussian_normals(means: Tensor, quats: Tensor, scales: Tensor, camera_centers: Tensor) -> Tensor:
    """Per-camera normals ``[C, N, 3]``: each Gaussian's shortest axis, turned to face the camera."""
    axes = qvec_to_rotmat(quats)  # columns are the Gaussian's axes
    shortest = scales.argmin(dim=-1)
    normal = axes.gather(2, shortest[:, None, None].expand(-1, 3, 1))[..., 0]
    to_camera = camera_centers[:, None] - means[None]
    flip = torch.where((normal[None] * to_camera).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return normal[None] * flip


def _normalized(normals: Tensor) -> Tensor:
    """Alpha-weighted normal sums -> unit normals (0 where nothing was drawn)."""
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _moved(means: Tensor, quats: Tensor, transform: Tensor) -> tuple[Tensor, Tensor]:
    """Gaussian centres ``[N, 3]`` and rotations ``[N, 4]`` moved by the rigid ``transform [4, 4]``."""
    from render3d.pose_correction import quaternion_product, rotation_quaternion

    rotation = transform[:3, :3]
    moved_quats = quaternion_product(rotation_quaternion(rotation[None]), quats)
    return means @ rotation.T + transform[:3, 3], moved_quats


def _project_and_shade(means: Tensor, quats: Tensor, scales: Tensor, coeffs: Tensor, sh_degree: int, viewmats: Tensor,
                       Ks: Tensor, centers: Tensor, width: int, height: int, settings: RasterSettings,
                       kernels: SplatKernels) -> tuple[Projection, Tensor]:
    """The projection of the Gaussians into ``C`` cameras and their SH colours ``[C, N, 3]``."""
    proj = kernels.project(means, quats, scales, viewmats, Ks, width, height, settings.eps2d, settings.near_plane,
                           settings.far_plane, settings.antialiased)
    return proj, kernels.colors(means, coeffs, sh_degree, centers)


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
    normals: bool = False,
    world_transforms: Optional[Tensor] = None,
    color_fn: Optional[ColorFn] = None,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Rendering of ``C`` cameras on the ``torch`` backend (colour, expected depth, alpha, info; ``info["normals"]``
    when asked): projection, SH colours and compositing by the kernels :func:`render3d.splat.kernels.splat_kernels`
    picks (compiled with numba on the CPU, else pure PyTorch).

    ``world_transforms [C, 4, 4]`` (pose correction, :mod:`render3d.pose_correction`): camera ``c`` sees the
    Gaussians moved by ``world_transforms[c]``, differentiably, so the compiled kernels serve corrected cameras too.
    """
    kernels = splat_kernels(means, quats, scales, opacities, coeffs, viewmats, Ks)
    centers = torch.linalg.inv(viewmats)[:, :3, 3]
    if world_transforms is None:
        proj, colors = _project_and_shade(means, quats, scales, coeffs, sh_degree, viewmats, Ks, centers, width, height, settings,
                                          kernels)
    else:
        parts = [_project_and_shade(*_moved(means, quats, world_transforms[c]), scales, coeffs, sh_degree, viewmats[c:c + 1],
                                    Ks[c:c + 1], centers[c:c + 1], width, height, settings, kernels)
                 for c in range(viewmats.shape[0])]
        proj = Projection(*(torch.cat([getattr(p, name) for p, _ in parts]) for name in ("means2d", "conics", "depths", "radii")),
                          compensations=torch.cat([p.compensations for p, _ in parts]) if settings.antialiased else None)
        colors = torch.cat([c for _, c in parts])
    if color_fn is not None:
        colors = color_fn(colors, means, centers)
    extra = gaussian_normals(means, quats, scales, centers) if normals else None
    images, depths, alphas, normal_images = [], [], [], []
    for c in range(viewmats.shape[0]):
        feats = torch.cat([colors[c], proj.depths[c, :, None]] + ([extra[c]] if extra is not None else []), dim=-1)
        img, alpha = kernels.composite(
            proj.means2d[c], proj.conics[c], feats, proj.opacities(opacities, c), proj.depths[c], proj.radii[c], width, height
        )
        images.append(img[..., :3])
        depths.append(img[..., 3:4] / alpha.clamp_min(1e-10))
        alphas.append(alpha)
        normal_images.append(img[..., 4:7])
    info = {
        "means2d": proj.means2d,
        "radii": proj.radii,
        "depths": proj.depths,
        "conics": proj.conics,
        "compensations": proj.compensations,
        "width": width,
        "height": height,
        "n_cameras": viewmats.shape[0],
        "packed": False,
        "gaussian_ids": None,
    }
    if normals:
        info["normals"] = _normalized(torch.stack(normal_images))
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
    normals: bool = False,
    world_transforms: Optional[Tensor] = None,
    color_fn: Optional[ColorFn] = None,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """gsplat's fused CUDA rasteriser with the same inputs and outputs as :func:`rasterize_torch`
    (``world_transforms`` become corrected view matrices: gsplat differentiates through them).

    With ``normals`` or ``color_fn`` the colours are evaluated here (and the normals ride along as three
    more feature channels: gsplat rasterises any number of channels when ``sh_degree`` is None).
    """
    from gsplat import rasterization

    if world_transforms is not None:
        viewmats = viewmats @ world_transforms
    colors, degree = coeffs, sh_degree
    if normals or color_fn is not None:
        centers = torch.linalg.inv(viewmats)[:, :3, 3]
        colors = sh_colors(means, coeffs, sh_degree, centers)
        if color_fn is not None:
            colors = color_fn(colors, means, centers)
        if normals:
            colors = torch.cat([colors, gaussian_normals(means, quats, scales, centers)], dim=-1)
        degree = None
    render, alphas, info = rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=settings.near_plane,
        far_plane=settings.far_plane,
        eps2d=settings.eps2d,
        sh_degree=degree,
        packed=settings.packed,
        tile_size=settings.tile_size,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if settings.antialiased else "classic",
    )
    info["packed"] = settings.packed
    if normals:
        info["normals"] = _normalized(render[..., 3:6])
    return render[..., :3], render[..., -1:], alphas, info


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
    normals: bool = False,
    world_transforms: Optional[Tensor] = None,
    color_fn: Optional[ColorFn] = None,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Render with ``backend`` (``cuda`` or ``torch``), compositing on ``background`` [3] if given.

    Args:
        means ``[N, 3]``, quats ``[N, 4]`` (w, x, y, z), scales ``[N, 3]`` (linear),
        opacities ``[N]`` in [0, 1], coeffs ``[N, K, 3]`` SH, viewmats ``[C, 4, 4]``, Ks ``[C, 3, 3]``.
        normals: also render world-space unit normals into ``info["normals"] [C, H, W, 3]``.
        world_transforms: ``[C, 4, 4]`` per-camera pose corrections as rigid maps of the world
            (:func:`render3d.pose_correction.world_transforms`); gradients reach them.
        color_fn: changes the Gaussians' colours before compositing, ``color_fn(colors [C, N, 3], means [N, 3],
            camera_centers [C, 3]) -> [C, N, 3]`` (per-image appearance, :mod:`render3d.appearance`).

    Returns ``(colors [C, H, W, 3], depth [C, H, W, 1], alphas [C, H, W, 1], info)``. Scene models wrap this:
    :meth:`render3d.splat.GaussianSplats.render` takes :class:`render3d.cameras.Cameras`.

    Examples:
        One Gaussian 3 units in front of a camera at the origin (OpenCV axes: +z forward):

        >>> means, quats = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> scales, opacities, coeffs = torch.full((1, 3), 0.5), torch.ones(1), torch.zeros(1, 1, 3)  # SH degree 0: grey
        >>> viewmats = torch.eye(4)[None]
        >>> Ks = torch.tensor([[[16.0, 0.0, 8.0], [0.0, 16.0, 8.0], [0.0, 0.0, 1.0]]])
        >>> colors, depth, alphas, info = rasterize("torch", means, quats, scales, opacities, coeffs, 0, viewmats, Ks, 16, 16)
        >>> colors.shape, depth.shape, alphas.shape
        (torch.Size([1, 16, 16, 3]), torch.Size([1, 16, 16, 1]), torch.Size([1, 16, 16, 1]))
        >>> round(float(depth[0, 8, 8, 0]), 3), float(alphas[0, 0, 0, 0])  # its depth at the centre; the corner is empty
        (3.0, 0.0)
    """
    settings = settings or RasterSettings()
    fn = rasterize_cuda if backend == "cuda" else rasterize_torch
    colors, depth, alphas, info = fn(
        means, quats, scales, opacities, coeffs, sh_degree, viewmats, Ks, width, height, settings, normals, world_transforms,
        color_fn,
    )
    if background is not None:
        colors = colors + (1.0 - alphas) * background.to(colors)
    return colors, depth, alphas, info
