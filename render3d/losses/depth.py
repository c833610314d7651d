"""Depth supervision from the data's depth maps (``Split.depths``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext, LossTerm


@dataclass
class DepthLossConfig(LossConfig):
    """Options of the depth loss (CLI: ``--loss.depth.NAME``)."""

    weight: float = option("weight of the depth loss", default=0.1)
    min_alpha: float = option("supervise only pixels the render covers at least this much (0: every pixel with depth)", default=0.0)


class DepthLoss(LossTerm):
    """Mean ``|rendered z-depth - data z-depth| / scene scale`` over pixels (or rays) whose data depth is known."""

    name = "depth"
    description = "L1 on rendered z-depth against the data's depth maps (relative to the scene scale)"
    config_type = DepthLossConfig

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        if scene.train.depths is None:
            raise Render3DError(f"--loss depth needs depth maps, but the training images of {scene.root} have none (depth_file_path): drop the term")

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        target = ctx.batch.depth
        pred = ctx.output.outputs["depth"]
        known = target > 0
        if self.config.min_alpha > 0:
            known = known & (ctx.output.outputs["alpha"].detach() >= self.config.min_alpha)
        if ctx.batch.mask is not None:
            known = known & ctx.batch.mask
        error = (pred - target).abs() * known
        return {"depth": error.sum() / known.sum().clamp_min(1) / self.scene_scale}
