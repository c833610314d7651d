"""A crop box that limits what is rendered and exported.

Models with a ``cropped(box)`` method crop themselves exactly (splats keep the Gaussians
whose centres lie in the box); any other scene model is cropped per pixel through the protocol: a pixel whose surface
point (from the rendered depth) lies outside the box shows the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.protocol import RenderOutput, SceneModel


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box ``lo``..``hi`` (world units)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def contains(self, points: Tensor) -> Tensor:
        """Boolean ``[...]``: which of ``points [..., 3]`` lie inside."""
        lo = torch.tensor(self.lo, dtype=points.dtype, device=points.device)
        hi = torch.tensor(self.hi, dtype=points.dtype, device=points.device)
        return ((points >= lo) & (points <= hi)).all(dim=-1)

    @property
    def center(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2 for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(max(b - a, 0.0) for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]


class DepthCroppedModel:
    """Any :class:`SceneModel`, with pixels whose depth point lies outside ``box`` cleared."""

    def __init__(self, model: SceneModel, box: CropBox) -> None:
        self.model = model
        self.box = box
        self.background = getattr(model, "background", None)

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        out = self.model.render(cameras, mode)
        masks = []
        for i in range(len(cameras)):
            dirs = cameras.pixel_directions(i).to(out.depth.device)  # z = 1, so dirs * depth is the point
            points_cam = dirs * out.depth[i]
            c2w = cameras.c2w[i].to(out.depth.device)
            points = points_cam @ c2w[:3, :3].T + c2w[:3, 3]
            masks.append((self.box.contains(points) & (out.depth[i, ..., 0] > 0))[..., None].float())
        mask = torch.stack(masks)
        bg = self.background if isinstance(self.background, Tensor) else torch.ones(3)
        bg = bg.to(out.rgb.device).reshape(1, 1, 1, 3)
        alpha = out.alpha * mask
        rgb = out.rgb * mask + bg * (1 - mask)
        extras = {k: v * mask if v.shape[:3] == mask.shape[:3] else v for k, v in out.extras.items()}
        return RenderOutput(rgb=rgb, depth=out.depth * mask, alpha=alpha, extras=extras)


def cropped(model: SceneModel, box: Optional[CropBox]) -> SceneModel:
    """``model`` limited to ``box`` (the model itself when ``box`` is None)."""
    if box is None:
        return model
    if hasattr(model, "cropped"):  # models that crop exactly (splats keep the Gaussians centred in the box)
        return model.cropped(torch.tensor([box.lo, box.hi]))  # type: ignore[attr-defined,no-any-return]
    return DepthCroppedModel(model, box)
