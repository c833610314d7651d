"""Where Gaussians start (``render3d train --points``), computed from the training views alone.

=============  ============================================================================
``--points``   starting points
=============  ============================================================================
``data``       the dataset's sparse points (COLMAP); random in the bounds when it has none
               or when ``--views`` drops them (they were reconstructed from every image)
``random``     uniform in the scene's bounds
``stereo``     plane-sweep stereo on the training views (:mod:`render3d.sparse_views.stereo`)
``hull``       inside the visual hull of the training views' alpha masks
``views``      ``hull`` when the training views have alpha, else ``stereo``
=============  ============================================================================

Every choice but ``data`` reads only the training images; like every run, they also use the
scene's bounds and near/far range, which some formats derive from all of their images.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import Tensor

from render3d.errors import Render3DError
from render3d.sparse_views.stereo import stereo_points

POINT_SOURCES = ("data", "random", "stereo", "hull", "views")

#: The visual hull's rejection sampling: candidate x view projections per round, the most and fewest
#: candidates per round, and the most rounds.
_HULL_PROJECTIONS = 1 << 20
_HULL_MAX_BATCH = 65_536
_HULL_MIN_BATCH = 1024
_HULL_ROUNDS = 200


def _in_hull(split: Any, candidates: Tensor, min_alpha: float) -> tuple[Tensor, Tensor]:
    """Which ``candidates [N, 3]`` lie inside the visual hull of ``split``'s alpha, and their mean colours ``[N, 3]``."""
    cameras = split.cameras.to("cpu")
    ui, vi, _, seen = cameras.pixels_hit(candidates)
    views = torch.arange(len(cameras))[:, None]
    alpha = split.alpha[..., 0].cpu()[views, vi, ui].float() / 255.0
    inside = (seen.sum(0) >= min(2, len(cameras))) & ((alpha > min_alpha) | ~seen).all(0)
    weight = seen.float()[..., None]
    colors = (split.images.cpu()[views, vi, ui].float() / 255.0 * weight).sum(0) / weight.sum(0).clamp_min(1.0)
    return inside, colors


def visual_hull_points(split: Any, bounds: Tensor, count: int, generator: torch.Generator,
                       min_alpha: float = 0.5) -> tuple[Tensor, Tensor]:
    """Up to ``count`` points uniform inside the visual hull of ``split``'s alpha masks, with colours in [0, 1].

    A point is inside when every view that sees it (in front of the camera, inside the frame) has
    alpha above ``min_alpha`` there, and at least two views see it (one, when there is one view):
    a point only one camera sees lies anywhere along its rays. Its colour is the mean of those
    views' pixels (a first guess; training corrects it). Points are drawn uniformly in ``bounds``
    and kept when inside, for at most ``_HULL_ROUNDS`` rounds.
    """
    lo, hi = bounds[0].float().cpu(), bounds[1].float().cpu()
    batch = max(_HULL_MIN_BATCH, min(_HULL_MAX_BATCH, _HULL_PROJECTIONS // len(split.cameras)))
    points, colors, kept = [], [], 0
    for _ in range(_HULL_ROUNDS):
        candidates = lo + (hi - lo) * torch.rand(batch, 3, generator=generator)
        inside, color = _in_hull(split, candidates, min_alpha)
        points.append(candidates[inside])
        colors.append(color[inside])
        kept += int(inside.sum())
        if kept >= count:
            break
    if kept < count:
        warnings.warn(f"the visual hull of the training views fills little of the scene's bounds: {kept} of {count} points found")
    return torch.cat(points)[:count], torch.cat(colors)[:count]


def initial_points(scene: Any, source: str, count: int, seed: int) -> Any:
    """``scene`` with ``points`` / ``point_colors`` (uint8) from ``source`` (one of :data:`POINT_SOURCES`), at most ``count``."""
    if source == "data":
        return scene
    if source == "random":  # the method's own random start
        return dataclasses.replace(scene, points=None, point_colors=None)
    if count < 1:
        raise Render3DError(f"--points {source} needs at least one point: raise --splat.init-points (got {count})")
    generator = torch.Generator().manual_seed(seed)
    split = scene.train
    asked, has_masks = source, split.alpha is not None and bool((split.alpha < 128).any())
    if source == "views":
        source = "hull" if has_masks else "stereo"
    if source == "hull":
        if not has_masks:
            raise Render3DError(f"--points {asked} needs training images with alpha (masks); those of {scene.root} have none: use --points stereo")
        points, colors = visual_hull_points(split, scene.bounds, count, generator)
    elif source == "stereo":
        if len(split) < 2:
            raise Render3DError(f"--points {asked} needs at least 2 training views: raise --views or use --points random")
        near, far = (float(x) for x in scene.near_far)
        points, colors = stereo_points(split.images, split.cameras, near, far, max_points=count, generator=generator)
    else:
        raise Render3DError(f"--points {source}: choose one of {', '.join(POINT_SOURCES)}")
    if len(points) == 0:
        raise Render3DError(f"--points {asked} found no points in the training views of {scene.root}: use --points random")
    return dataclasses.replace(scene, points=points.float(), point_colors=(colors.clamp(0, 1) * 255).round().to(torch.uint8))
