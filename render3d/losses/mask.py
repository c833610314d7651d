"""Coverage supervision: rendered opacity against the data's alpha or object masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext, LossTerm


@dataclass
class MaskLossConfig(LossConfig):
    """Options of the mask loss (CLI: ``--loss.mask.NAME``)."""

    weight: float = option("weight of the mask loss", default=0.1)


class MaskLoss(LossTerm):
    """Binary cross-entropy of rendered opacity against the data's alpha (or its masks when it has no alpha).

    Opaque where the object is and empty elsewhere: it removes floaters in front of the
    background and holes in the object that the colour loss alone can leave.
    """

    name = "mask"
    description = "binary cross-entropy of rendered opacity against the data's alpha or object masks"
    config_type = MaskLossConfig

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        if scene.train.alpha is None and scene.train.masks is None:
            raise Render3DError(f"--loss mask needs alpha or masks, but the training images of {scene.root} have neither: drop the term")

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        batch = ctx.batch
        target = batch.alpha if batch.alpha is not None else batch.mask.float()
        alpha = ctx.output.outputs["alpha"].clamp(1e-5, 1.0 - 1e-5)
        return {"mask": F.binary_cross_entropy(alpha, target)}
