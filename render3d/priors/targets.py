"""Pseudo targets from a zoo diffusion model: the "refine and re-train" route of ReconFusion-like methods, small-scale.

Every ``refresh`` steps the term renders ``patches`` patches of pseudo views (at the prior's
image size, no gradient), refines them with the frozen prior by SDEdit (noise to
``strength`` of the schedule, then deterministic DDIM back to a clean patch:
:meth:`render3d.zoo.diffusion.Diffusion.refine`) and keeps the refined patches as targets.
Each step it renders one of those patches again, with gradient, and adds the L1 distance to
its target, a mean over pixels like the image loss (so its weight reads like one). Where
score distillation (:mod:`.sds`) pushes every pixel along a one-step noise estimate, this
asks the 3D model to match what the prior makes of its own render in many steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext
from render3d.priors.pseudo_views import patch_camera
from render3d.priors.sds import PriorTerm


@dataclass
class PriorTargetsConfig(LossConfig):
    """Options of the pseudo targets (``--prior RUN --prior-mode targets``; CLI ``--loss.prior-targets.NAME``)."""

    weight: float = option("weight of the L1 distance between pseudo-view patches and their refined targets", default=0.1)
    prior: str = option("run folder of `render3d prior fit` (or of `render3d zoo train diffusion`)", default="")
    strength: float = option("noise level the renders are refined from, as a fraction of the schedule (SDEdit's strength)", default=0.4)
    denoise_steps: int = option("DDIM steps from that noise level back to a clean patch", default=8)
    refresh: int = option("render and refine a new set of pseudo-view patches every N steps", default=100)
    patches: int = option("pseudo-view patches refined at a time", default=8)

    def __post_init__(self) -> None:
        checks = [("strength", 0.0 < self.strength <= 1.0, "in (0, 1]"), ("denoise-steps", self.denoise_steps >= 1, ">= 1"),
                  ("refresh", self.refresh >= 1, ">= 1"), ("patches", self.patches >= 1, ">= 1")]
        for name, ok, what in checks:
            if not ok:
                raise Render3DError(f"--loss.prior-targets.{name} must be {what}, got {getattr(self, name.replace('-', '_'))}")


class PriorTargets(PriorTerm):
    """L1 to pseudo-view patches refined by a frozen diffusion prior (SDEdit), refreshed every few steps."""

    name = "prior-targets"
    description = "L1 to pseudo-view patches refined by a zoo diffusion prior (SDEdit; --prior RUN --prior-mode targets)"
    config_type = PriorTargetsConfig

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        self.cameras: Cameras | None = None  # the current patches' cameras and refined targets [P, S, S, 3]
        self.targets: Tensor | None = None
        self.refreshed_at = -1

    def _refresh(self, method: Any, step: int, device: torch.device) -> None:
        """Render ``patches`` new pseudo-view patches and refine them into targets (no gradient)."""
        cameras = patch_camera(self.views.sample(self.config.patches), self.size, self.generator)
        with torch.no_grad():
            renders = method.render_views(cameras.to(device))["rgb"].float()  # [P, S, S, 3]
            refined = self.prior.to(device).refine(renders.permute(0, 3, 1, 2), self.config.strength, self.config.denoise_steps,
                                                   self.generator)
        self.cameras, self.targets, self.refreshed_at = cameras, refined.permute(0, 2, 3, 1).cpu().contiguous(), step

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        device = ctx.batch.rgb.device
        if self.targets is None or ctx.step - self.refreshed_at >= self.config.refresh:
            self._refresh(ctx.method, ctx.step, device)
        index = (ctx.step - self.refreshed_at) % self.config.patches
        rgb = ctx.method.render_views(self.cameras[index:index + 1].to(device))["rgb"]
        return {"prior_targets": (rgb - self.targets[index:index + 1].to(rgb)).abs().mean()}

    def state_dict(self) -> dict:
        state: dict[str, Any] = {**super().state_dict(), "refreshed_at": self.refreshed_at}
        if self.targets is not None:
            state.update(targets=self.targets, K=self.cameras.K, c2w=self.cameras.c2w)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.refreshed_at = int(state["refreshed_at"])
        if "targets" in state:
            self.targets = state["targets"]
            self.cameras = Cameras(state["K"], state["c2w"], self.size, self.size)
