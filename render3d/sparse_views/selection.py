"""Which training views a sparse run sees (``render3d train --views K``).

- :func:`spread_views`: K training views chosen deterministically and spread around the
  scene (farthest-point sampling on camera positions, from the camera nearest their centre).
- :func:`sparse_scene`: a scene whose train split keeps only those views (val and test are
  untouched, so runs compare directly).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from render3d.cameras import Cameras
from render3d.errors import Render3DError


def spread_views(cameras: Cameras, count: int) -> list[int]:
    """``count`` camera indices, spread by farthest-point sampling on the camera centres (sorted)."""
    n = len(cameras)
    if not 1 <= count <= n:
        raise Render3DError(f"--views {count}: the training split has {n} images; choose 1-{n}")
    centers = cameras.centers.double()
    chosen = [int((centers - centers.mean(0)).norm(dim=-1).argmin())]
    distance = (centers - centers[chosen[0]]).norm(dim=-1)
    while len(chosen) < count:
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = torch.minimum(distance, (centers - centers[nxt]).norm(dim=-1))
    return sorted(chosen)


def sparse_scene(scene: Any, count: int) -> Any:
    """``scene`` trained from ``count`` spread views only.

    Sparse points (COLMAP) were reconstructed from every image, the held-out ones too, so
    they are dropped: Gaussians start from random points in the scene's bounds.
    """
    keep = spread_views(scene.train.cameras, count)
    t = scene.train
    pick = lambda x: None if x is None else x[keep]  # noqa: E731
    train = dataclasses.replace(t, images=t.images[keep], cameras=t.cameras[keep], names=[t.names[i] for i in keep] if t.names else [],
                                alpha=pick(t.alpha), depths=pick(t.depths), masks=pick(t.masks))
    if scene.points is not None:
        warnings.warn(f"--views {count}: the dataset's sparse points come from all its images, so they are not used")
    return dataclasses.replace(scene, train=train, points=None, point_colors=None)
