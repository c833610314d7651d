"""Training batches drawn from a split: whole views (splats) or random rays (NeRF).

Each batcher owns its seeded generator and saves it in the checkpoint, so a resumed run
draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from render3d.methods import Batch


class ViewBatcher:
    """Every training view once per epoch, in a seeded random order, one view per batch."""

    def __init__(self, split: Any, device: torch.device, seed: int) -> None:
        self.split = split
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def next(self) -> Batch:
        """The next view as a one-image batch (targets ``[1, H, W, C]``)."""
        if not self.order:
            self.order = torch.randperm(len(self.split), generator=self.generator).tolist()
        i = self.order.pop()
        s = self.split
        index = [i]
        mask = None if s.masks is None else s.masks[index][..., None].to(self.device)
        return Batch(
            rgb=s.image_float(i, self.device)[None],
            cameras=s.cameras[i].to(self.device),
            indices=torch.tensor(index),
            alpha=None if s.alpha is None else (s.alpha[index].float() / 255.0).to(self.device),
            depth=None if s.depths is None else s.depths[index][..., None].float().to(self.device),
            mask=mask,
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = [int(i) for i in state["order"]]


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
        """A batch of ``count`` rays."""
        s = self.split
        n, h, w = s.images.shape[:3]
        index = torch.randint(0, n, (count,), generator=self.generator)
        py = torch.randint(0, h, (count,), generator=self.generator)
        px = torch.randint(0, w, (count,), generator=self.generator)
        origins, dirs = s.cameras.rays_at_pixels(index, px, py)
        z_scale = (dirs * s.cameras.c2w[index, :3, 2]).sum(-1, keepdim=True)
        target = s.images[index, py, px].float() / 255.0
        alpha = None if s.alpha is None else s.alpha[index, py, px].float() / 255.0
        background = self.background
        if self.random_background:
            background = torch.rand(count, 3, generator=self.generator)
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
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
