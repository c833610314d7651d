"""Score distillation from a zoo diffusion model (DreamFusion's SDS, as threestudio implements it).

Each step renders a patch of a pseudo view at the prior's image size, noises it at a
random timestep ``t`` (uniform in ``[t_min, t_max]`` of the schedule, ``t_max`` annealed
down to ``t_min + 0.3`` over the run), asks the frozen prior for the noise, and pushes the
render along ``w(t) (eps_pred - eps)`` with no gradient through the denoiser:
``loss = 0.5 ||x - stopgrad(x - grad)||^2``, whose gradient with respect to the render is
exactly ``grad``. ``w(t) = 1 - alpha_bar(t)`` (DreamFusion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext, LossTerm
from render3d.priors.pseudo_views import PseudoViews, patch_camera
from render3d.nn import schedule


@runtime_checkable
class NoisePredictor(Protocol):
    """A diffusion model the prior can ask: its noise schedule and its noise prediction."""

    alphas_cumprod: Tensor  # [T] signal fraction of each step

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Optional[Tensor] = None, guidance: float = 1.0) -> Tensor: ...


def load_prior(run: str) -> Any:
    """The frozen diffusion model of a prior run (``render3d prior fit``), with one-line errors."""
    from render3d.zoo import load

    if not run:
        raise Render3DError("the diffusion prior needs a prior run: pass --prior RUN (made by `render3d prior fit`)")
    model = load(run)
    if not isinstance(model, NoisePredictor):
        raise Render3DError(f"{run} holds a zoo {model.name} model, not a diffusion model: fit one with `render3d prior fit`")
    if model.spec.channels != 3:
        raise Render3DError(f"{run} was trained on {model.spec.channels}-channel images; a 3D prior needs RGB (3)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def sds_gradient(prior: NoisePredictor, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """``w(t) (eps_pred(x_t, t) - noise)`` for images ``x [B, C, S, S]`` in [-1, 1] (no gradient flows);
    the prediction is unconditional (a labelled prior's "no label" embedding)."""
    with torch.no_grad():
        ab = prior.alphas_cumprod[t].view(-1, 1, 1, 1).to(x)
        x_t = schedule.add_noise(x.detach(), ab, noise)
        return (1 - ab) * (prior.predict_noise(x_t, t) - noise)


def sds_loss(x: Tensor, grad: Tensor) -> Tensor:
    """A loss whose gradient with respect to ``x`` is ``grad`` (summed over pixels, averaged over the batch)."""
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / len(x)


@dataclass
class ScoreDistillationConfig(LossConfig):
    """Options of the diffusion prior (``--prior RUN --prior-weight W``; CLI ``--loss.sds.NAME``)."""

    weight: float = option("weight of the score-distillation loss (summed over the patch's pixels)", default=3e-4)
    prior: str = option("run folder of `render3d prior fit` (or of `render3d zoo train diffusion`)", default="")
    t_min: float = option("smallest timestep, as a fraction of the schedule", default=0.02)
    t_max: float = option("largest timestep at the start, as a fraction of the schedule (annealed down)", default=0.98)


class PriorTerm(LossTerm):
    """A loss term that looks at patches of pseudo views through the frozen diffusion prior of
    ``config.prior``: the prior, its patch size, the pseudo views and a seeded generator (saved)."""

    def setup(self, scene: Any, seed: int) -> None:
        super().setup(scene, seed)
        self.prior = load_prior(self.config.prior)
        self.size = self.prior.spec.size
        self.views = PseudoViews(scene.train.cameras, seed)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def state_dict(self) -> dict:
        return {"views": self.views.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.views.load_state_dict(state["views"])
        self.generator.set_state(state["generator"])


class ScoreDistillation(PriorTerm):
    """Score distillation sampling from a frozen zoo diffusion model on patches of pseudo views."""

    name = "sds"
    description = "score distillation from a zoo diffusion prior on patches of pseudo views (--prior RUN)"
    config_type = ScoreDistillationConfig

    def timestep_range(self, step: int, total_steps: int) -> tuple[int, int]:
        """Step indices to draw from: ``t_max`` anneals linearly to ``t_min + 0.3`` over the run."""
        T = len(self.prior.alphas_cumprod)
        progress = step / max(total_steps, 1)
        top = self.config.t_max + (min(self.config.t_max, self.config.t_min + 0.3) - self.config.t_max) * progress
        return max(0, int(self.config.t_min * T)), max(int(self.config.t_min * T) + 1, int(top * T))

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        device = ctx.batch.rgb.device
        self.prior.to(device)
        cameras = patch_camera(self.views.sample(1), self.size, self.generator).to(device)
        rgb = ctx.method.render_views(cameras)["rgb"]  # [1, S, S, 3] in [0, 1]
        x = rgb.permute(0, 3, 1, 2) * 2.0 - 1.0
        low, high = self.timestep_range(ctx.step, ctx.total_steps)
        t = torch.randint(low, high, (len(x),), generator=self.generator).to(device)
        noise = torch.randn(x.shape, generator=self.generator).to(x)
        grad = sds_gradient(self.prior, x, t, noise)
        return {"sds": sds_loss(x, grad)}
