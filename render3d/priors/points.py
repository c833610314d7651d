"""Where Gaussians start (``render3d train --points``), computed from the training views alone.

=============  ============================================================================
``--points``   starting points
=============  ============================================================================
``data``       the dataset's sparse points (COLMAP); random in the bounds when it has none
               or when ``--views`` drops them (they were reconstructed from every image)
``random``     uniform in the scene's bounds
``stereo``     plane-sweep stereo on the training views (:mod:`render3d.priors.stereo`)
``hull``       inside the visual hull of the training views' alpha masks
``views``      ``hull`` when the training views have alpha, else ``stereo``
=============  ============================================================================

Every choice but ``data`` reads only the training split, so a sparse-view run stays honest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from render3d.errors import Render3DError
from render3d.priors.stereo import stereo_points

POINT_SOURCES = ("data", "random", "stereo", "hull", "views")

#: Candidate points tested per round, and the most rounds, of the visual hull's rejection sampling.
_HULL_BATCH = 65_536
_HULL_ROUNDS = 200


def _in_hull(split: Any, candidates: Tensor, min_alpha: float) -> tuple[Tensor, Tensor]:
    """Which ``candidates [N, 3]`` lie inside the visual hull of ``split``'s alpha, and their mean colours ``[N, 3]``."""
    cameras = split.cameras.to("cpu")
    w2c = torch.linalg.inv(cameras.c2w)
    cam = torch.einsum("vij,nj->vni", w2c[:, :3, :3], candidates) + w2c[:, None, :3, 3]
    z = cam[..., 2]
    safe = z.clamp_min(1e-9)
    u = cameras.K[:, None, 0, 0] * cam[..., 0] / safe + cameras.K[:, None, 0, 2]
    v = cameras.K[:, None, 1, 1] * cam[..., 1] / safe + cameras.K[:, None, 1, 2]
    seen = (z > 0) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
    ui = u.floor().long().clamp(0, cameras.width - 1)
    vi = v.floor().long().clamp(0, cameras.height - 1)
    views = torch.arange(len(cameras))[:, None]
    alpha = split.alpha[..., 0][views, vi, ui].float() / 255.0
    inside = (seen.sum(0) >= min(2, len(cameras))) & ((alpha > min_alpha) | ~seen).all(0)
    weight = seen.float()[..., None]
    colours = (split.images[views, vi, ui].float() / 255.0 * weight).sum(0) / weight.sum(0).clamp_min(1.0)
    return inside, colours


def visual_hull_points(split: Any, bounds: Tensor, count: int, generator: torch.Generator,
                       min_alpha: float = 0.5) -> tuple[Tensor, Tensor]:
    """Up to ``count`` points uniform inside the visual hull of ``split``'s alpha masks, with colours in [0, 1].

    A point is inside when every view that sees it (in front of the camera, inside the frame) has
    alpha above ``min_alpha`` there, and at least two views see it (one, when there is one view):
    a point only one camera sees lies anywhere along its rays. Its colour is the mean of those
    views' pixels (a first guess; training corrects it). Points are drawn uniformly in ``bounds``
    and kept when inside, for at most ``_HULL_ROUNDS`` rounds.
    """
    lo, hi = bounds[0].float(), bounds[1].float()
    points, colours, kept = [], [], 0
    for _ in range(_HULL_ROUNDS):
        candidates = lo + (hi - lo) * torch.rand(_HULL_BATCH, 3, generator=generator)
        inside, colour = _in_hull(split, candidates, min_alpha)
        points.append(candidates[inside])
        colours.append(colour[inside])
        kept += int(inside.sum())
        if kept >= count:
            break
    return torch.cat(points)[:count], torch.cat(colours)[:count]


def initial_points(scene: Any, source: str, count: int, seed: int) -> Any:
    """``scene`` with ``points`` / ``point_colors`` (uint8) from ``source`` (one of :data:`POINT_SOURCES`), at most ``count``."""
    if source == "data":
        return scene
    generator = torch.Generator().manual_seed(seed)
    split = scene.train
    if source == "views":
        source = "hull" if split.alpha is not None else "stereo"
    if source == "random":
        lo, hi = scene.bounds[0].float(), scene.bounds[1].float()
        points = lo + (hi - lo) * torch.rand(count, 3, generator=generator)
        colours = torch.rand(count, 3, generator=generator)
    elif source == "hull":
        if split.alpha is None:
            raise Render3DError(f"--points hull needs training images with alpha (masks); {scene.root} has none: use --points stereo")
        points, colours = visual_hull_points(split, scene.bounds, count, generator)
    elif source == "stereo":
        if len(split) < 2:
            raise Render3DError("--points stereo needs at least 2 training views: raise --views or use --points random")
        near, far = scene.near_far
        points, colours = stereo_points(split.images, split.cameras, float(near), float(far))
        pick = torch.randperm(len(points), generator=generator)[:count]
        points, colours = points[pick], colours[pick]
    else:
        raise Render3DError(f"--points {source}: choose one of {', '.join(POINT_SOURCES)}")
    if len(points) == 0:
        raise Render3DError(f"--points {source} found no points in the training views of {scene.root}: use --points random")
    return dataclasses.replace(scene, points=points.float(), point_colors=(colours.clamp(0, 1) * 255).round().to(torch.uint8))
