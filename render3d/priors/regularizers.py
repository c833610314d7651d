"""Non-learned regularisers for sparse views, as loss-term plug-ins (``render3d train --reg NAME[:WEIGHT]``).

=============  ===========================================================  ===========
name           what it does                                                  for
=============  ===========================================================  ===========
``depth-tv``   smooth rendered depth in patches of pseudo views (RegNeRF)   splats, NeRF
``opacity``    L1 on opacities: fewer, more decisive Gaussians               splats
``scale``      L1 on the largest axis of each Gaussian, relative to the      splats
               scene: no blobs stretched over unseen space
``freq``       FreeNeRF's frequency annealing of the encoding (hash-grid     NeRF
               levels or positional-encoding frequencies)
``occlusion``  FreeNeRF's occlusion penalty: density right in front of the   NeRF
               training cameras
=============  ===========================================================  ===========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext, LossTerm
from render3d.priors.pseudo_views import PseudoViews, patch_camera
from render3d.protocol import FrequencyLimited, HasDensity, HasGaussians


def _require(method: Any, capability: type, term: str, what: str) -> None:
    if not isinstance(method.model, capability):
        raise Render3DError(f"--reg {term} needs {what}, which the {method.name} method's model does not have")


# ----- depth smoothness on pseudo views ------------------------------------------------------------


@dataclass
class DepthSmoothnessConfig(LossConfig):
    """Options of ``depth-tv`` (CLI: ``--loss.depth-tv.NAME``)."""

    weight: float = option("weight of the depth smoothness", default=0.1)
    patch: int = option("side of the pseudo-view patch rendered each step, in pixels", default=32)


class DepthSmoothness(LossTerm):
    """Mean squared difference of neighbouring depths in a patch of a random pseudo view (relative to the
    scene scale), where both neighbours are covered: unseen regions get smooth geometry (RegNeRF)."""

    name = "depth-tv"
    description = "smooth rendered depth in patches of pseudo views near the training cameras (RegNeRF)"
    config_type = DepthSmoothnessConfig

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        self.views = PseudoViews(scene.train.cameras, seed)
        self.patches = torch.Generator().manual_seed(seed + 1)

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        cameras = patch_camera(self.views.sample(1), self.config.patch, self.patches).to(ctx.batch.rgb.device)
        out = ctx.method.render_views(cameras)
        depth = out["depth"][0, ..., 0] / self.scene_scale
        covered = (out["alpha"][0, ..., 0] > 0.5).detach()
        dx = (depth[:, 1:] - depth[:, :-1]) ** 2 * (covered[:, 1:] & covered[:, :-1])
        dy = (depth[1:] - depth[:-1]) ** 2 * (covered[1:] & covered[:-1])
        return {"depth_tv": (dx.sum() + dy.sum()) / depth.numel()}

    def state_dict(self) -> dict:
        return {"views": self.views.state_dict(), "patches": self.patches.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.views.load_state_dict(state["views"])
        self.patches.set_state(state["patches"])


# ----- Gaussian opacity and scale ---------------------------------------------------------------------


@dataclass
class GaussianRegularizerConfig(LossConfig):
    """Options of ``opacity`` and ``scale`` (CLI: ``--loss.opacity.NAME``, ``--loss.scale.NAME``)."""

    weight: float = option("weight of the penalty (3DGS-MCMC uses 0.01)", default=0.01)


class OpacityRegularizer(LossTerm):
    """Mean Gaussian opacity (L1: sparse, decisive Gaussians; 3DGS-MCMC's opacity regulariser)."""

    name = "opacity"
    description = "L1 on Gaussian opacities"
    config_type = GaussianRegularizerConfig

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        _require(ctx.method, HasGaussians, self.name, "Gaussians")
        return {"opacity": ctx.method.model.gaussians(live=True).opacities().mean()}


class ScaleRegularizer(LossTerm):
    """Mean of each Gaussian's largest standard deviation, relative to the scene scale."""

    name = "scale"
    description = "L1 on the largest axis of each Gaussian (relative to the scene size)"
    config_type = GaussianRegularizerConfig

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        _require(ctx.method, HasGaussians, self.name, "Gaussians")
        largest = torch.exp(ctx.method.model.gaussians(live=True).log_scales.amax(dim=-1))
        return {"scale": largest.mean() / self.scene_scale}


# ----- FreeNeRF -----------------------------------------------------------------------------------------


@dataclass
class FrequencyAnnealingConfig(LossConfig):
    """Options of ``freq`` (CLI: ``--loss.freq.NAME``)."""

    until: float = option("fraction of the run by which every frequency is on (FreeNeRF: 0.9)", default=0.9)


class FrequencyAnnealing(LossTerm):
    """FreeNeRF's frequency regularisation: the encoding starts with its coarsest levels / lowest
    frequencies and opens the rest linearly until ``until`` of the run. Adds no loss."""

    name = "freq"
    description = "FreeNeRF frequency annealing of the encoding (NeRF)"
    config_type = FrequencyAnnealingConfig

    def before_step(self, step: int, total_steps: int, method: Any) -> None:
        _require(method, FrequencyLimited, self.name, "an encoding whose frequencies can be limited")
        method.model.set_frequency_limit(min(1.0, step / max(self.config.until * total_steps, 1.0)))

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        return {}


@dataclass
class OcclusionConfig(LossConfig):
    """Options of ``occlusion`` (CLI: ``--loss.occlusion.NAME``)."""

    weight: float = option("weight of the occlusion penalty", default=0.01)
    reach: float = option("penalise density within this fraction of each ray's near-far range from its camera", default=0.08)
    samples: int = option("points per ray", default=8)


class OcclusionPenalty(LossTerm):
    """FreeNeRF's occlusion regularisation: density right in front of a training camera is almost always a
    floater that only that view sees, so penalise it (mean density x spacing of points near the camera)."""

    name = "occlusion"
    description = "FreeNeRF occlusion penalty on density right in front of the training cameras (NeRF)"
    config_type = OcclusionConfig

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        self.near, self.far = scene.near_far

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        _require(ctx.method, HasDensity, self.name, "a volume density")
        batch = ctx.batch
        if batch.origins is None:
            raise Render3DError("--reg occlusion needs ray batches (a NeRF method)")
        step = self.config.reach * (self.far - self.near) / self.config.samples
        t = self.near + step * (torch.arange(self.config.samples, device=batch.origins.device) + 0.5)
        points = batch.origins[:, None, :] + batch.directions[:, None, :] * t[None, :, None]
        sigma = ctx.method.model.density(points.reshape(-1, 3))
        return {"occlusion": (sigma * step).mean()}
