"""Meshes from any scene model: TSDF fusion of rendered depth, marching cubes, vertex colours.

Each view's depth and colour (from ``model.render``) are fused into a truncated signed
distance field on a voxel grid over the scene bounds. Pixels the model leaves empty
(alpha below ``min_alpha``) carve free space along their rays; voxels far behind a surface are
left unobserved and masked out of marching cubes, so no false shell appears there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from render3d.cameras import Cameras
from render3d.errors import Render3DError
from render3d.files import atomic_path
from render3d.protocol import SceneModel

MESH_FORMATS = (".ply", ".obj", ".glb")


@dataclass
class MeshConfig:
    """Options of :func:`mesh_from_model`."""

    resolution: int = 128  # voxels along the longest side of the bounds
    truncation: float = 3.0  # TSDF truncation in voxels
    min_alpha: float = 0.5  # pixels below this opacity count as empty space
    padding: float = 0.05  # grow the bounds by this fraction on each side
    min_component: float = 0.02  # drop connected pieces with fewer faces than this fraction of the largest


@dataclass
class TSDFVolume:
    """A fused grid: signed distance (in truncation units), weights and mean colours per voxel."""

    tsdf: Tensor  # [X, Y, Z]
    weight: Tensor  # [X, Y, Z]
    color: Tensor  # [X, Y, Z, 3] colour sums over observations near the surface
    color_weight: Tensor  # [X, Y, Z]
    origin: Tensor  # [3] centre of voxel (0, 0, 0)
    voxel: float

    @classmethod
    def over(cls, bounds: Tensor, resolution: int, padding: float) -> "TSDFVolume":
        lo, hi = bounds[0].double(), bounds[1].double()
        pad = (hi - lo) * padding
        lo, hi = lo - pad, hi + pad
        voxel = float((hi - lo).max()) / resolution
        dims = [max(2, int(np.ceil(float(e) / voxel))) for e in (hi - lo)]
        origin = (lo + 0.5 * voxel).float()
        return cls(
            torch.ones(dims), torch.zeros(dims), torch.zeros(*dims, 3), torch.zeros(dims), origin, voxel,
        )

    def centers(self) -> Tensor:
        """World positions ``[X*Y*Z, 3]`` of the voxel centres."""
        axes = [torch.arange(n, dtype=torch.float32) for n in self.tsdf.shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        return self.origin + grid * self.voxel

    def integrate(self, cameras: Cameras, index: int, depth: Tensor, rgb: Tensor, alpha: Tensor, trunc: float, min_alpha: float, points: Tensor) -> None:
        """Fuse one view (``depth``/``alpha [H, W]``, ``rgb [H, W, 3]``) into the volume."""
        w2c = torch.linalg.inv(cameras.c2w[index].double()).float()
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        K = cameras.K[index]
        u = (K[0, 0] * cam[:, 0] / z.clamp_min(1e-6) + K[0, 2]).floor().long()
        v = (K[1, 1] * cam[:, 1] / z.clamp_min(1e-6) + K[1, 2]).floor().long()
        seen = (z > 1e-4) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
        idx = torch.nonzero(seen)[:, 0]
        pix = v[idx] * cameras.width + u[idx]
        d = depth.reshape(-1)[pix]
        a = alpha.reshape(-1)[pix]
        hit = a >= min_alpha
        sdf = torch.where(hit, d - z[idx], torch.full_like(d, trunc))
        update = sdf > -trunc
        idx, sdf, pix = idx[update], sdf[update], pix[update]
        value = (sdf / trunc).clamp(max=1.0)
        tsdf, weight = self.tsdf.view(-1), self.weight.view(-1)
        tsdf[idx] = (tsdf[idx] * weight[idx] + value) / (weight[idx] + 1)
        weight[idx] += 1
        near = (value < 1.0) & hit[update]
        cidx = idx[near]
        self.color.view(-1, 3)[cidx] += rgb.reshape(-1, 3)[pix[near]]
        self.color_weight.view(-1)[cidx] += 1

    def mesh(self, min_component: float = 0.0):
        """Marching cubes on the observed voxels; vertex colours interpolated from the colour grid."""
        import trimesh
        from scipy.ndimage import map_coordinates
        from skimage.measure import marching_cubes

        volume = self.tsdf.numpy()
        mask = self.weight.numpy() > 0
        if not (volume[mask] < 0).any() or not (volume[mask] > 0).any():
            raise Render3DError("the fused depth holds no surface: check the bounds and that the model renders the scene")
        # the object is where the signed distance is below zero; "descent" then orients faces outwards
        verts, faces, _, _ = marching_cubes(volume, level=0.0, mask=mask, gradient_direction="descent", allow_degenerate=False)
        csum = np.stack([map_coordinates(self.color[..., c].numpy(), verts.T, order=1, mode="nearest") for c in range(3)], -1)
        cw = map_coordinates(self.color_weight.numpy(), verts.T, order=1, mode="nearest")[:, None]
        colors = np.clip(csum / np.maximum(cw, 1e-6), 0, 1)
        world = verts * self.voxel + self.origin.numpy()
        rgba = np.concatenate([colors * 255 + 0.5, np.full((len(colors), 1), 255.0)], -1).astype(np.uint8)
        mesh = trimesh.Trimesh(world, faces, vertex_colors=rgba, process=True)
        return drop_small_components(mesh, min_component)


def drop_small_components(mesh, fraction: float):
    """``mesh`` without connected pieces smaller than ``fraction`` of the largest (by faces)."""
    if fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    import trimesh

    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep = np.isin(labels, np.nonzero(counts >= fraction * counts.max())[0])
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def mesh_from_model(model: SceneModel, cameras: Cameras, bounds: Tensor, config: MeshConfig = MeshConfig(), progress: bool = True):
    """Fuse the model's depth from ``cameras`` over ``bounds [2, 3]`` and extract a coloured ``trimesh.Trimesh``."""
    volume = TSDFVolume.over(bounds.cpu(), config.resolution, config.padding)
    points = volume.centers()
    trunc = config.truncation * volume.voxel
    cams = cameras.to("cpu")
    for i in tqdm(range(len(cameras)), disable=not progress, desc="fuse depth", unit="view", dynamic_ncols=True):
        out = model.render(cameras[i], mode="depth")
        volume.integrate(cams, i, out.depth[0, ..., 0].cpu(), out.rgb[0].cpu(), out.alpha[0, ..., 0].cpu(), trunc, config.min_alpha, points)
    return volume.mesh(config.min_component)


def save_mesh(mesh, path: Union[str, os.PathLike]) -> Path:
    """Write a mesh as PLY, OBJ or GLB (by the file suffix) with vertex colours, atomically."""
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise Render3DError(f"cannot write a mesh to {path}: use a {', '.join(MESH_FORMATS)} file name")
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lower().lstrip("."))
    return path
