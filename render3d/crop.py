"""A crop box that limits what is rendered and exported (the viewer's crop box, a camera path's ``crop``).

:class:`~render3d.protocol.Croppable` models crop themselves exactly (splats keep the
Gaussians whose centres lie in the box); any other scene model is cropped per pixel
through the protocol: a pixel whose surface point (from the rendered depth) lies outside
the box shows the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.images import unproject_depth
from render3d.protocol import Croppable, RenderOutput, SceneModel, render_preview


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box ``lo``..``hi`` (world units)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:  # accept any sequences of three numbers
        object.__setattr__(self, "lo", tuple(float(v) for v in self.lo))
        object.__setattr__(self, "hi", tuple(float(v) for v in self.hi))

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
    """Any :class:`SceneModel`, with pixels whose depth point lies outside ``box`` cleared to the background."""

    def __init__(self, model: SceneModel, box: CropBox) -> None:
        self.model = model
        self.box = box
        self.background = model.background

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        return self._crop(cameras, self.model.render(cameras, mode))

    def render_preview(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """The model's preview render (:func:`render3d.protocol.render_preview`), cropped the same way."""
        return self._crop(cameras, render_preview(self.model, cameras, mode))

    def _crop(self, cameras: Cameras, out: RenderOutput) -> RenderOutput:
        masks = []
        for i in range(len(cameras)):
            points = unproject_depth(cameras, i, out.depth[i])
            masks.append((self.box.contains(points) & (out.depth[i, ..., 0] > 0))[..., None].float())
        mask = torch.stack(masks)
        bg = self.background.to(out.rgb.device).reshape(1, 1, 1, 3)
        alpha = out.alpha * mask
        rgb = out.rgb * mask + bg * (1 - mask)
        extras = {k: v * mask if v.shape[:3] == mask.shape[:3] else v for k, v in out.extras.items()}
        return RenderOutput(rgb=rgb, depth=out.depth * mask, alpha=alpha, extras=extras)


def cropped(model: SceneModel, box: Optional[CropBox]) -> SceneModel:
    """``model`` limited to ``box`` (the model itself when ``box`` is None)."""
    if box is None:
        return model
    if isinstance(model, Croppable):
        return model.cropped(torch.tensor([box.lo, box.hi]))
    return DepthCroppedModel(model, box)
