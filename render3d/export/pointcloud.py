"""Coloured point clouds: Gaussian centres, or surface points unprojected from rendered depth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.errors import Render3DError
from render3d.files import write_bytes_atomic
from render3d.images import unproject_depth
from render3d.protocol import HasGaussians, SceneModel


def gaussian_points(model: HasGaussians, min_opacity: float = 0.1) -> tuple[Tensor, Tensor]:
    """Centres ``[P, 3]`` and DC colours ``[P, 3]`` in [0, 1] of Gaussians at least ``min_opacity`` opaque."""
    g = model.gaussians()
    keep = (g.opacities() >= min_opacity).cpu()
    return g.means.detach().cpu().float()[keep], g.rgb().detach().cpu().float()[keep]


def surface_points(model: SceneModel, cameras: Cameras, min_alpha: float = 0.5, stride: int = 2) -> tuple[Tensor, Tensor]:
    """Points where each camera's rendered depth lands (every ``stride``-th pixel), with their colours.

    Works with any scene model (splats or NeRF fields) through ``render(cameras, mode)``.
    """
    points, colors = [], []
    for i in range(len(cameras)):
        cam = cameras[i]
        out = model.render(cam, mode="depth")
        depth = out.depth[0, ..., 0].cpu()
        world = unproject_depth(cam.to("cpu"), 0, depth)[::stride, ::stride]
        depth = depth[::stride, ::stride]
        alpha = out.alpha[0, ::stride, ::stride, 0].cpu()
        rgb = out.rgb[0, ::stride, ::stride].cpu()
        keep = (alpha >= min_alpha) & (depth > 0)
        points.append(world[keep])
        colors.append(rgb[keep])
    return torch.cat(points), torch.cat(colors)


def save_point_cloud(points: Tensor, colors: Tensor, path: Union[str, os.PathLike]) -> Path:
    """Write points with uint8 RGB colours as a binary PLY (x y z red green blue), atomically."""
    path = Path(path)
    if len(points) == 0:
        raise Render3DError(f"no points to write to {path}: lower the opacity threshold or check the model")
    records = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    xyz = points.detach().cpu().float().numpy()
    rgb = (colors.detach().cpu().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    for i, name in enumerate(("x", "y", "z")):
        records[name] = xyz[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        records[name] = rgb[:, i]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(records)}"]
    header += [f"property float {n}" for n in "xyz"] + [f"property uchar {n}" for n in ("red", "green", "blue")] + ["end_header"]
    return write_bytes_atomic(path, ("\n".join(header) + "\n").encode("ascii") + records.tobytes())
