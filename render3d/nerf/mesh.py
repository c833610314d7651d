"""Mesh extraction from a NeRF's density: grid -> marching cubes -> vertex colours -> trimesh."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from render3d.nerf.render import render_dense


@torch.no_grad()
def density_grid(field: nn.Module, resolution: int, box: Optional[Tensor] = None, chunk: int = 1 << 16) -> tuple[np.ndarray, Tensor]:
    """Density sampled at ``resolution^3`` points spanning ``box [2, 3]`` (default: the field's box)."""
    device = field.box.aabb.device
    box = (box if box is not None else field.box.aabb).to(device).float()
    axes = [torch.linspace(float(box[0, i]), float(box[1, i]), resolution, device=device) for i in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    sigma = torch.cat([field.density(p) for p in points.split(chunk)])
    return sigma.reshape(resolution, resolution, resolution).cpu().numpy(), box.cpu()


@torch.no_grad()
def extract_mesh(field: nn.Module, step_size: float, resolution: int = 128, threshold: Optional[float] = None,
                 box: Optional[Tensor] = None):
    """A coloured ``trimesh.Trimesh`` of the surface where ``field``'s density crosses ``threshold``.

    ``threshold`` defaults to the density at which one marching step of ``step_size`` reaches
    50% opacity. Vertex colours are volume-rendered along the inward normal from just
    outside the surface (what a camera looking straight at it would see).
    """
    import trimesh
    from skimage.measure import marching_cubes

    from render3d.errors import Render3DError

    grid, box = density_grid(field, resolution, box)
    if threshold is None:
        threshold = float(np.log(2.0) / step_size)
    if not (grid.min() < threshold < grid.max()):
        raise Render3DError(f"the density never crosses {threshold:.3g} inside the box: train longer or pass a lower threshold")
    spacing = ((box[1] - box[0]) / (resolution - 1)).numpy()
    verts, faces, normals, _ = marching_cubes(grid, level=threshold, spacing=tuple(spacing))
    verts = verts + box[0].numpy()
    device = field.box.aabb.device
    v = torch.from_numpy(verts.copy()).float().to(device)
    n = torch.from_numpy(normals.copy()).float().to(device)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    # skimage normals point towards decreasing density (outwards): volume-render a short ray
    # from just outside back through the surface, so each vertex gets the colour a camera sees
    reach = 3.0 * float(spacing.max())
    t = torch.linspace(0.0, 2.0 * reach, 17, device=device)
    colors = []
    for vc, nc in zip(v.split(1 << 14), n.split(1 << 14)):
        starts, ends = t[:-1].expand(len(vc), -1).contiguous(), t[1:].expand(len(vc), -1).contiguous()
        out, _ = render_dense(field, vc + reach * nc, -nc, starts, ends, torch.ones_like(starts, dtype=torch.bool), None)
        colors.append(out.rgb / out.alpha.clamp_min(1e-6))
    colors = torch.cat(colors)
    rgba = np.concatenate([(colors.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8), np.full((len(verts), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], vertex_colors=rgba, process=False)
