"""Training batches drawn from a split: whole views (splats) or random rays (NeRF).

Each batcher owns its seeded generator and saves it in the checkpoint, so a resumed run
draws the same batches as an uninterrupted one. In a distributed run every rank draws
the whole global batch (``batch_size`` x the number of ranks) from the same generator and
keeps its own slice, so one process with batch 2 and two processes with batch 1 see the
same images and rays.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from render3d.images import recomposite
from render3d.methods import Batch
from render3d.training import distributed as dist


def _own_share(count: int) -> slice:
    """This rank's part of a global batch of ``count`` x world-size items."""
    return slice(dist.rank() * count, (dist.rank() + 1) * count)


class ViewBatcher:
    """Every training view once per epoch, in a seeded random order, ``batch_size`` views per batch (per rank).

    With ``random_background`` and a split that has alpha, each view gets a random background
    colour (``Batch.background [B, 3]``) and its target is re-composited on it, as
    :class:`RayBatcher` does for rays.
    """

    def __init__(self, split: Any, device: torch.device, seed: int, batch_size: int = 1, background: Optional[Tensor] = None,
                 random_background: bool = False) -> None:
        self.split = split
        self.device = device
        self.batch_size = batch_size
        self.random_background = random_background and split.alpha is not None
        self.background = None if background is None else background.float().cpu()
        if self.random_background and self.background is None:
            raise ValueError("random_background needs the background the images were composited on")
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def _draw(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.split), generator=self.generator).tolist()
        return self.order.pop()

    def next(self) -> Batch:
        """The next views of this rank (targets ``[B, H, W, C]``)."""
        total = self.batch_size * dist.world_size()
        index = [self._draw() for _ in range(total)][_own_share(self.batch_size)]
        s = self.split
        mask = None if s.masks is None else s.masks[index][..., None].to(self.device)
        rgb = s.images[index].to(self.device).float() / 255.0
        alpha = None if s.alpha is None else (s.alpha[index].float() / 255.0).to(self.device)
        background = None
        if self.random_background:
            background = torch.rand(total, 3, generator=self.generator)[_own_share(self.batch_size)].to(self.device)
            rgb = recomposite(rgb, alpha, self.background, background[:, None, None, :])
        return Batch(
            rgb=rgb,
            cameras=s.cameras[index].to(self.device),
            indices=torch.tensor(index),
            alpha=alpha,
            background=background,
            depth=None if s.depths is None else s.depths[index][..., None].float().to(self.device),
            mask=mask,
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = [int(i) for i in state["order"]]


def downscaled(batch: Batch, factor: float) -> Batch:
    """An image batch at ``factor`` (< 1) times its resolution: cameras scaled, colours and alpha area-averaged,
    depth and masks taken at the nearest pixel (so unknown depth stays 0, not a blend)."""
    if factor >= 1.0:
        return batch
    cameras = batch.cameras.scaled(factor)
    size = (cameras.height, cameras.width)

    def resample(images: Optional[Tensor], mode: str) -> Optional[Tensor]:
        if images is None:
            return None
        out = F.interpolate(images.permute(0, 3, 1, 2).float(), size=size, mode=mode).permute(0, 2, 3, 1)
        return out.to(images.dtype)

    return replace(batch, rgb=resample(batch.rgb, "area"), cameras=cameras, alpha=resample(batch.alpha, "area"),
                   depth=resample(batch.depth, "nearest"), mask=resample(batch.mask, "nearest"))


class RayBatcher:
    """Random (image, pixel) rays from every image of a split, with their targets.

    With ``random_background`` and a split that has alpha, every ray gets a random
    background colour and its target is re-composited on it (Instant-NGP's trick): the
    field cannot explain the data with a coloured haze, so empty space stays empty.
    Targets are ``[R, C]``.
    """

    def __init__(self, split: Any, device: torch.device, seed: int, background: Tensor, random_background: bool = False) -> None:
        self.split = split
        self.random_background = random_background and split.alpha is not None
        self.background = background.float().cpu()
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

    def next(self, count: int) -> Batch:
        """This rank's ``count`` rays, with a uniform ``jitter`` per ray for stratified sampling."""
        s = self.split
        n, h, w = s.images.shape[:3]
        total = count * dist.world_size()
        mine = _own_share(count)
        index = torch.randint(0, n, (total,), generator=self.generator)
        py = torch.randint(0, h, (total,), generator=self.generator)
        px = torch.randint(0, w, (total,), generator=self.generator)
        random_colors = torch.rand(total, 3, generator=self.generator) if self.random_background else None
        jitter = torch.rand(total, 1, generator=self.generator)
        index, py, px, jitter = index[mine], py[mine], px[mine], jitter[mine]
        origins, dirs = s.cameras.rays_at_pixels(index, px, py)
        z_scale = (dirs * s.cameras.c2w[index, :3, 2]).sum(-1, keepdim=True)
        target = s.images[index, py, px].float() / 255.0
        alpha = None if s.alpha is None else s.alpha[index, py, px].float() / 255.0
        background = self.background
        if random_colors is not None:
            background = random_colors[mine]
            target = target + (1.0 - alpha) * (background - self.background)
        to = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        return Batch(
            rgb=to(target),
            indices=index,
            alpha=to(alpha),
            depth=None if s.depths is None else to(s.depths[index, py, px][:, None].float()),
            mask=None if s.masks is None else to(s.masks[index, py, px][:, None]),
            background=to(background),
            origins=to(origins),
            directions=to(dirs),
            z_scale=to(z_scale),
            jitter=to(jitter),
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
