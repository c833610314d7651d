"""Plane-sweep multi-view stereo on the training views: a coloured point cloud with no learned model.

For each training view (the *reference*), fronto-parallel planes at depths uniform in inverse
depth between the scene's near and far are swept; each plane warps the nearest other views
(the *sources*) into the reference, and the zero-mean normalised cross-correlation (NCC) of
grey-level windows scores how well they agree. Each pixel keeps its best-scoring depth
(winner takes all). A pixel's point survives *fusion* when its score clears ``min_score``
and at least one source view, reprojecting it, finds its own depth there within
``depth_tolerance`` (the geometric check of COLMAP's fusion). Textureless windows and
windows that leave a source image never vote.

This is the classic route to sparse-view initial points: FSGS and DNGaussian start from a
COLMAP reconstruction of the few training views; this needs no feature matcher. It works for
forward-facing captures (small baselines); for a few views around an object, whose baselines
are too wide for windows to match, :func:`render3d.priors.points.visual_hull_points` is the
tool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from render3d.cameras import Cameras

_LUMA = (0.299, 0.587, 0.114)


@dataclass
class StereoSettings:
    """Knobs of :func:`stereo_points` (defaults suit images of a few hundred pixels)."""

    planes: int = 64
    window_radius: int = 3
    sources: int = 4
    min_score: float = 0.5
    depth_tolerance: float = 0.01
    max_side: int = 512
    min_texture: float = 1e-4


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over ``(2 radius + 1)²`` windows of ``x [D, H, W]`` (edges average what exists)."""
    return F.avg_pool2d(x[:, None], 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)[:, 0]


def _project(cameras: Cameras, index: int, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel coordinates ``u, v`` (pixel centres at +0.5) and depth ``z`` of world ``points [..., 3]`` in one camera."""
    w2c = torch.linalg.inv(cameras.c2w[index])
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[..., 2]
    safe = z.clamp_min(1e-9)
    K = cameras.K[index]
    return K[0, 0] * cam[..., 0] / safe + K[0, 2], K[1, 1] * cam[..., 1] / safe + K[1, 2], z


def _backproject(cameras: Cameras, index: int, depth: Tensor) -> Tensor:
    """World points ``[H, W, 3]`` of a z-depth map of camera ``index``."""
    c2w = cameras.c2w[index]
    return (cameras.pixel_directions(index) * depth[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]


def plane_sweep(cameras: Cameras, grey: Tensor, ref: int, sources: list[int], near: float, far: float,
                settings: StereoSettings) -> tuple[Tensor, Tensor]:
    """Best depth ``[H, W]`` of view ``ref`` and its NCC score ``[H, W]`` (0 where no source could vote)."""
    s = settings
    height, width = grey.shape[1:]
    depths = 1.0 / torch.linspace(1.0 / near, 1.0 / far, s.planes)
    reference = grey[ref][None]
    mean_r = _box(reference, s.window_radius)
    var_r = _box(reference**2, s.window_radius) - mean_r**2
    textured = var_r > s.min_texture
    total = torch.zeros(s.planes, height, width)
    votes = torch.zeros(s.planes, height, width)
    points = _backproject(cameras, ref, depths[:, None, None].expand(-1, height, width))  # [D, H, W, 3]
    for src in sources:
        u, v, z = _project(cameras, src, points)
        grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], dim=-1)
        warped = F.grid_sample(grey[src][None, None].expand(s.planes, 1, height, width), grid, align_corners=False)[:, 0]
        seen = ((grid.abs() <= 1).all(-1) & (z > 0)).float()
        seen = _box(seen, s.window_radius) > 0.999  # the whole window lands inside the source image
        mean_s = _box(warped, s.window_radius)
        var_s = _box(warped**2, s.window_radius) - mean_s**2
        cov = _box(warped * reference, s.window_radius) - mean_s * mean_r
        ncc = cov / (var_s.clamp_min(1e-8) * var_r.clamp_min(1e-8)).sqrt()
        voting = seen & textured & (var_s > s.min_texture)
        total += torch.where(voting, ncc, torch.zeros(()))
        votes += voting.float()
    score = total / votes.clamp_min(1)
    best, index = score.max(dim=0)
    return depths[index], best


def stereo_points(images: Tensor, cameras: Cameras, near: float, far: float,
                  settings: StereoSettings = StereoSettings()) -> tuple[Tensor, Tensor]:
    """Fused points ``[N, 3]`` and their colours ``[N, 3]`` in [0, 1] from ``images [V, H, W, 3]`` (uint8 or float).

    Views larger than ``settings.max_side`` are matched at that size. Needs at least two views.
    """
    if len(cameras) < 2:
        raise ValueError("plane-sweep stereo needs at least two views")
    rgb = images.float() / 255.0 if not images.is_floating_point() else images.float()
    scale = min(1.0, settings.max_side / max(cameras.width, cameras.height))
    cams = cameras.to("cpu").scaled(scale) if scale < 1.0 else cameras.to("cpu")
    if scale < 1.0:
        rgb = F.interpolate(rgb.permute(0, 3, 1, 2), size=(cams.height, cams.width), mode="area").permute(0, 2, 3, 1)
    grey = (rgb * torch.tensor(_LUMA)).sum(-1)
    centres = cams.centers
    depth_maps, scores = [], []
    for ref in range(len(cams)):
        gaps = (centres - centres[ref]).norm(dim=-1)
        gaps[ref] = float("inf")
        sources = gaps.argsort()[: min(settings.sources, len(cams) - 1)].tolist()
        depth, score = plane_sweep(cams, grey, ref, sources, near, far, settings)
        depth_maps.append(depth)
        scores.append(score)
    points, colours = [], []
    for ref in range(len(cams)):
        world = _backproject(cams, ref, depth_maps[ref])
        confirmed = torch.zeros_like(scores[ref], dtype=torch.bool)
        for other in range(len(cams)):
            if other == ref:
                continue
            u, v, z = _project(cams, other, world)
            inside = (z > 0) & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
            ui = u.floor().long().clamp(0, cams.width - 1)
            vi = v.floor().long().clamp(0, cams.height - 1)
            agrees = (depth_maps[other][vi, ui] - z).abs() < settings.depth_tolerance * z
            confirmed |= inside & agrees & (scores[other][vi, ui] > settings.min_score)
        keep = confirmed & (scores[ref] > settings.min_score)
        points.append(world[keep])
        colours.append(rgb[ref][keep])
    return torch.cat(points), torch.cat(colours)
