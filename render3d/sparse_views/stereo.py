"""Plane-sweep multi-view stereo on the training views: a coloured point cloud with no learned model.

For each training view (the *reference*), fronto-parallel planes at depths uniform in inverse
depth between the scene's near and far are swept; each plane warps the nearest other views
(the *sources*) into the reference, and the zero-mean normalised cross-correlation (NCC) of
grey-level windows scores how well they agree. Each pixel keeps its best-scoring depth
(winner takes all), refined between planes by a parabola through the neighbouring scores.
A pixel's point survives *fusion* when its score clears ``min_score`` and at least one of
its source views, reprojecting it, finds its own depth there within ``depth_tolerance``
(the geometric check of COLMAP's fusion). Textureless windows and windows that leave a
source image never vote.

This is the classic route to sparse-view initial points: FSGS and DNGaussian start from a
COLMAP reconstruction of the few training views; this needs no feature matcher. It works for
forward-facing captures (small baselines); for a few views around an object, whose baselines
are too wide for windows to match, :func:`render3d.sparse_views.points.visual_hull_points` is the
tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from render3d.cameras import Cameras
from render3d.images import unproject_depth

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


def _refine(score: Tensor, inverse_depths: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel, the best plane's score ``[H, W]`` and a depth ``[H, W]`` refined between planes by a
    parabola through the best score and its two neighbours (in inverse depth, where planes are even)."""
    best, index = score.max(dim=0)
    planes = score.shape[0]
    below = score.gather(0, (index - 1).clamp(0, planes - 1)[None])[0]
    above = score.gather(0, (index + 1).clamp(0, planes - 1)[None])[0]
    curve = below - 2 * best + above
    inner = (index > 0) & (index < planes - 1) & (curve < 0)
    shift = torch.where(inner, 0.5 * (below - above) / torch.where(inner, curve, torch.ones(())), torch.zeros(())).clamp(-0.5, 0.5)
    step = inverse_depths[1] - inverse_depths[0]
    return best, 1.0 / (inverse_depths[index] + shift * step)


def plane_sweep(cameras: Cameras, gray: Tensor, ref: int, sources: list[int], near: float, far: float,
                settings: StereoSettings) -> tuple[Tensor, Tensor]:
    """Depth ``[H, W]`` of view ``ref`` (best plane, refined between planes) and its NCC score ``[H, W]``
    (0 where no source could vote)."""
    s = settings
    height, width = gray.shape[1:]
    inverse_depths = torch.linspace(1.0 / near, 1.0 / far, s.planes)
    reference = gray[ref][None]
    mean_r = _box(reference, s.window_radius)
    var_r = _box(reference**2, s.window_radius) - mean_r**2
    textured = var_r > s.min_texture
    total = torch.zeros(s.planes, height, width)
    votes = torch.zeros(s.planes, height, width)
    center = cameras.centers[ref]
    step = unproject_depth(cameras, ref, torch.ones(height, width)) - center  # world offset per unit of z-depth
    points = center + step[None] * (1.0 / inverse_depths)[:, None, None, None]  # [D, H, W, 3]
    for src in sources:
        u, v, z = cameras.project(points, src)
        grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], dim=-1)
        warped = F.grid_sample(gray[src][None, None].expand(s.planes, 1, height, width), grid, align_corners=False,
                               padding_mode="border")[:, 0]
        seen = ((u >= 0.5) & (u <= width - 0.5) & (v >= 0.5) & (v <= height - 0.5) & (z > 0)).float()
        seen = _box(seen, s.window_radius) > 0.999  # the whole window lands inside the source image
        mean_s = _box(warped, s.window_radius)
        var_s = _box(warped**2, s.window_radius) - mean_s**2
        cov = _box(warped * reference, s.window_radius) - mean_s * mean_r
        ncc = cov / (var_s.clamp_min(1e-8) * var_r.clamp_min(1e-8)).sqrt()
        voting = seen & textured & (var_s > s.min_texture)
        total += torch.where(voting, ncc, torch.zeros(()))
        votes += voting.float()
    best, depth = _refine(total / votes.clamp_min(1), inverse_depths)
    return depth, best


def _gray_views(images: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Colour ``[V, h, w, 3]`` in [0, 1] and grey ``[V, h, w]`` views at ``width`` x ``height``, one view at a time."""
    colors = []
    for image in images:
        rgb = image.float() / 255.0 if not image.is_floating_point() else image.float()
        if rgb.shape[:2] != (height, width):
            rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)
        colors.append(rgb)
    rgb = torch.stack(colors)
    return rgb, (rgb * torch.tensor(_LUMA)).sum(-1)


def stereo_points(images: Tensor, cameras: Cameras, near: float, far: float, settings: StereoSettings = StereoSettings(),
                  max_points: Optional[int] = None, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Fused points ``[N, 3]`` and their colours ``[N, 3]`` in [0, 1] from ``images [V, H, W, 3]`` (uint8 or float).

    Views larger than ``settings.max_side`` are matched at that size. Each view keeps at most
    ``max_points / V`` of its points (drawn with ``generator``) when ``max_points`` is given.
    Needs at least two views and ``0 < near < far``.
    """
    if len(cameras) < 2:
        raise ValueError("plane-sweep stereo needs at least two views")
    if not 0 < near < far:
        raise ValueError(f"plane-sweep stereo needs 0 < near < far, got near={near}, far={far}")
    if not 0 < settings.min_score < 1:
        raise ValueError(f"min_score must lie in (0, 1), got {settings.min_score}")
    scale = min(1.0, settings.max_side / max(cameras.width, cameras.height))
    cams = cameras.to("cpu").scaled(scale) if scale < 1.0 else cameras.to("cpu")
    rgb, gray = _gray_views(images.cpu(), cams.width, cams.height)
    centers = cams.centers
    sources, depth_maps, scores = [], [], []
    for ref in range(len(cams)):
        gaps = (centers - centers[ref]).norm(dim=-1)
        gaps[ref] = float("inf")
        sources.append(gaps.argsort()[: min(settings.sources, len(cams) - 1)].tolist())
        depth, score = plane_sweep(cams, gray, ref, sources[ref], near, far, settings)
        depth_maps.append(depth)
        scores.append(score)
    per_view = None if max_points is None else -(-max_points // len(cams))
    points, colors = [], []
    for ref in range(len(cams)):
        world = unproject_depth(cams, ref, depth_maps[ref])
        confirmed = torch.zeros_like(scores[ref], dtype=torch.bool)
        for other in sources[ref]:
            ui, vi, z, inside = cams.pixels_hit(world, other)
            agrees = (depth_maps[other][vi, ui] - z).abs() < settings.depth_tolerance * z
            confirmed |= inside & agrees & (scores[other][vi, ui] > settings.min_score)
        keep = (confirmed & (scores[ref] > settings.min_score)).nonzero(as_tuple=True)
        if per_view is not None and len(keep[0]) > per_view:
            pick = torch.randperm(len(keep[0]), generator=generator)[:per_view]
            keep = (keep[0][pick], keep[1][pick])
        points.append(world[keep])
        colors.append(rgb[ref][keep])
    return torch.cat(points), torch.cat(colors)
