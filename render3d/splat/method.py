"""3D Gaussian Splatting as a trainable method: config, optimisers, loss and densification."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from render3d.batches import ViewBatcher, downscaled
from render3d.cameras import Cameras
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.methods import Batch, BaseMethod, StepOutput
from render3d.metrics import ssim
from render3d.pose_correction import PoseLearning, check_pose_options
from render3d.appearance import (APPEARANCE_MODES, AppearanceEmbedding, ExposureCorrection, appearance_optimizers,
                                       appearance_state, load_appearance_state, make_appearance)
from render3d.splat.model import GaussianSplats, init_params, random_points
from render3d.splat.render import RasterSettings
from render3d.splat.strategies import make_strategy
from render3d.training import distributed as dist
from render3d.training.loop import RealStepCounter, periodic_step
from render3d.training.optim import adam

REFERENCE_STEPS = 30_000  # the 3DGS schedule below is written for a 30k-step run



#: Opacity and scale L1 weights each strategy trains with unless told otherwise (3DGS-MCMC's 0.01).
STRATEGY_REGULARIZATION = {"mcmc": 0.01, "default": 0.0}


@dataclass
class SplatConfig:
    """Options of the Gaussian Splatting method (CLI: ``--splat.NAME``).

    Step counts "of a 30k-step run" follow the 3DGS reference schedule and are scaled to the run's ``steps``
    (:func:`scaled`); the others are used as given.

    Args:
        sh_degree (int): Highest spherical-harmonics degree (0-3). Default: 3.
        sh_degree_interval (int): Raise the active SH degree every N steps of a 30k-step run (scaled). Default: 1000.
        init_points (int): Gaussians to start from: random ones when the data has no sparse points; the most that
            ``--points stereo|hull|views`` makes. Default: 10_000.
        init_opacity (float): Initial opacity of every Gaussian. Default: 0.1.
        init_scale (float): Initial size relative to the mean distance to the 3 nearest Gaussians. Default: 0.5.
        strategy (str): Densification strategy: ``default`` (clone / split / prune) or ``mcmc``. Default: "default".
        cap_max (int): Most Gaussians the ``mcmc`` strategy may use. Default: 100_000.
        max_gaussians (int): Most Gaussians the ``default`` strategy may keep: whenever densification (or the start) passes it,
            the least opaque are removed; 0: no limit. Default: 0.
        refine_start (int): First densification step of a 30k-step run (scaled). Default: 500.
        refine_stop (int): Last densification step of a 30k-step run (scaled). Default: 15_000.
        refine_every (int): Densify every N steps (not scaled: the gradient statistics need this many steps).
            Default: 100.
        reset_every (int): Reset opacities every N steps of a 30k-step run (scaled; ``default`` strategy). Default:
            3000.
        grow_grad2d (float): Screen-space gradient above which a Gaussian is cloned or split. Default: 0.0002.
        lr_means (float): Learning rate of positions, times the scene scale; decays to ``lr_means_final`` times itself
            over the run. Default: 1.6e-4.
        lr_means_final (float): Share of ``lr_means`` left at the end of the run (3DGS: 0.01). Default: 0.01.
        lr_scales (float): Learning rate of log-scales. Default: 5e-3.
        lr_quats (float): Learning rate of rotations. Default: 1e-3.
        lr_opacities (float): Learning rate of opacity logits. Default: 5e-2.
        lr_sh0 (float): Learning rate of the SH DC colour. Default: 2.5e-3.
        lr_shN (float): Learning rate of the higher SH bands. Default: 1.25e-4 (2.5e-3 / 20).
        random_background (bool): Train on a random background colour per view where the data has alpha, so no
            Gaussian can pose as the background (NeRF's default; off here by default). Default: False.
        ssim_weight (float): Weight of (1 - SSIM) in the loss; the rest is L1. Default: 0.2.
        opacity_reg (Optional[float]): L1 penalty on opacities; None: the strategy's preset (``mcmc`` 0.01,
            ``default`` 0), filled in when the config is made. Default: None.
        scale_reg (Optional[float]): L1 penalty on scales; None: the strategy's preset (``mcmc`` 0.01, ``default``
            0), filled in when the config is made. Default: None.
        appearance (str): Per-image appearance learned in training: ``none``; ``exposure`` (a gain per colour
            channel and training image); or ``embedding`` (a latent code per training image that a small MLP turns
            into a change of each Gaussian's colour, for light that changes more than exposure). Either is zero-mean
            over the images; renders, evaluation and exports show the average (:mod:`render3d.appearance`).
            Default: "none".
        lr_appearance (float): Learning rate of the per-image appearance (``appearance``: each image's gain or code
            moves only in the steps that draw it). Default: 0.1.
        lr_appearance_mlp (float): Learning rate of the MLP of ``appearance embedding``. Default: 1e-3.
        resolution_start (float): Coarse to fine: train the first steps on images scaled by this factor (e.g. 0.25);
            the scale doubles at even intervals until full size at ``resolution_full`` of the run; 1: full size
            throughout. Default: 1.0.
        resolution_full (float): Share of the run (0-1) from which training uses full-size images (see
            ``resolution_start``). Default: 0.5.
        pose_opt (bool): Learn a rigid correction of each training camera's pose (for poses from structure from
            motion); checkpoints, the viewer and ``render --path`` use the corrected poses. Default: False.
        lr_pose (float): Learning rate of the pose corrections (radians and scene scales per step that draws the
            image; decays 10x from ``pose_opt_start`` to the end of the run). Default: 1e-2.
        pose_reg (float): Weight of the L2 penalty on the pose corrections. Default: 1e-3.
        pose_opt_start (float): Share of the run (0-1) trained on the given poses before the corrections start
            learning, so they align to a scene that has formed. Default: 0.3.
        antialiased (bool): Mip-Splatting's 2D filter (gsplat's ``antialiased`` mode): each Gaussian's opacity is
            compensated for the screen-space blur, so renders at other resolutions or distances than training's do not
            swell or alias; PLY exports bake the compensation in. Default: False.
        packed (bool): Packed rasterisation on CUDA (saves memory); the strategy is told the same. Default: True.
        near_plane (float): Gaussians closer than this to the camera are not drawn. Default: 0.01.

    Examples:
        >>> SplatConfig().opacity_reg, SplatConfig(strategy="mcmc").opacity_reg  # the strategy's preset
        (0.0, 0.01)
        >>> SplatConfig(appearance="gain")
        Traceback (most recent call last):
            ...
        render3d.errors.Render3DError: --splat.appearance 'gain' is not known: use none or exposure or embedding
    """

    sh_degree: int = option("highest spherical-harmonics degree (0-3)", default=3)
    sh_degree_interval: int = option("raise the active SH degree every N steps of a 30k-step run (scaled)", default=1000)
    init_points: int = option("Gaussians to start from: random ones when the data has no sparse points; the most that --points stereo|hull|views "
                              "makes", default=10_000)
    init_opacity: float = option("initial opacity of every Gaussian", default=0.1)
    init_scale: float = option("initial size relative to the mean distance to the 3 nearest Gaussians", default=0.5)
    strategy: str = option("densification strategy: default (clone/split/prune) or mcmc", default="default")
    cap_max: int = option("most Gaussians the mcmc strategy may use", default=100_000)
    max_gaussians: int = option("most Gaussians the default strategy may keep: whenever densification (or the start) passes it, "
                                "the least opaque are removed, so steps stay cheap and memory bounded (0: no limit)", default=0)
    refine_start: int = option("first densification step of a 30k-step run (scaled to --steps)", default=500)
    refine_stop: int = option("last densification step of a 30k-step run (scaled)", default=15_000)
    refine_every: int = option("densify every N steps (not scaled: the gradient statistics need this many steps)", default=100)
    reset_every: int = option("reset opacities every N steps of a 30k-step run (scaled; default strategy)", default=3000)
    grow_grad2d: float = option("screen-space gradient above which a Gaussian is cloned or split", default=0.0002)
    lr_means: float = option("learning rate of positions, times the scene scale; decays to --splat.lr-means-final times "
                             "itself over the run", default=1.6e-4)
    lr_means_final: float = option("share of --splat.lr-means left at the end of the run (3DGS: 0.01)", default=0.01)
    lr_scales: float = option("learning rate of log-scales", default=5e-3)
    lr_quats: float = option("learning rate of rotations", default=1e-3)
    lr_opacities: float = option("learning rate of opacity logits", default=5e-2)
    lr_sh0: float = option("learning rate of the SH DC colour", default=2.5e-3)
    lr_shN: float = option("learning rate of the higher SH bands", default=2.5e-3 / 20)
    random_background: bool = option("train on a random background colour per view where the data has alpha, so no Gaussian "
                                     "can pose as the background (NeRF's default; off here by default)", default=False)
    ssim_weight: float = option("weight of (1 - SSIM) in the loss; the rest is L1", default=0.2)
    opacity_reg: Optional[float] = option("L1 penalty on opacities; default: the strategy's (mcmc 0.01, default 0)", default=None)
    scale_reg: Optional[float] = option("L1 penalty on scales; default: the strategy's (mcmc 0.01, default 0)", default=None)
    appearance: str = option("per-image appearance learned in training: none; exposure (a gain per colour channel and "
                             "training image); or embedding (a latent code per image that a small MLP turns into a change "
                             "of each Gaussian's colour). Zero-mean over the images: renders, evaluation and exports show "
                             "the average", default="none")
    lr_appearance: float = option("learning rate of the per-image appearance (--splat.appearance; each image's gain or code "
                                  "moves only in the steps that draw it)", default=0.1)
    lr_appearance_mlp: float = option("learning rate of the MLP of --splat.appearance embedding", default=1e-3)
    resolution_start: float = option("coarse to fine: train the first steps on images scaled by this factor (e.g. 0.25); "
                                     "the scale doubles at even intervals until full size at --splat.resolution-full "
                                     "of the run; 1: full size throughout", default=1.0)
    resolution_full: float = option("share of the run (0-1) from which training uses full-size images "
                                    "(--splat.resolution-start)", default=0.5)
    pose_opt: bool = option("learn a rigid correction of each training camera's pose (for poses from structure from "
                            "motion); checkpoints, the viewer and render --path use the corrected poses", default=False)
    lr_pose: float = option("learning rate of the pose corrections (radians and scene scales per step that draws the "
                            "image; decays 10x from --splat.pose-opt-start to the end of the run)", default=1e-2)
    pose_reg: float = option("weight of the L2 penalty on the pose corrections", default=1e-3)
    pose_opt_start: float = option("share of the run (0-1) trained on the given poses before the corrections start "
                                   "learning", default=0.3)
    antialiased: bool = option("Mip-Splatting's 2D filter (gsplat's antialiased mode): opacities compensated for the "
                               "screen-space blur, so renders at other resolutions or distances do not swell or alias; "
                               "PLY exports bake the compensation in", default=False)
    packed: bool = option("packed rasterisation on CUDA (saves memory); the strategy is told the same", default=True)
    near_plane: float = option("Gaussians closer than this to the camera are not drawn", default=0.01)

    def __post_init__(self) -> None:
        """Check the appearance and pose options; fill the regularisers left unset with the strategy's presets (config.json
        records the values used)."""
        if self.appearance not in APPEARANCE_MODES:
            raise Render3DError(f"--splat.appearance {self.appearance!r} is not known: use {' or '.join(APPEARANCE_MODES)}")
        for name in ("lr_appearance", "lr_appearance_mlp"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise Render3DError(f"--splat.{name.replace('_', '-')} {value} must be a number above 0")
        if not (math.isfinite(self.resolution_start) and 0 < self.resolution_start <= 1):
            raise Render3DError(f"--splat.resolution-start {self.resolution_start} must be above 0 and at most 1")
        if not (math.isfinite(self.resolution_full) and 0 <= self.resolution_full <= 1):
            raise Render3DError(f"--splat.resolution-full {self.resolution_full} must be between 0 and 1")
        if not (math.isfinite(self.lr_means_final) and 0 < self.lr_means_final <= 1):
            raise Render3DError(f"--splat.lr-means-final {self.lr_means_final} must be above 0 and at most 1")
        if self.max_gaussians < 0:
            raise Render3DError(f"--splat.max-gaussians {self.max_gaussians} must be at least 0 (0: no limit)")
        check_pose_options("splat", self.lr_pose, self.pose_reg, self.pose_opt_start)
        preset = STRATEGY_REGULARIZATION.get(self.strategy, 0.0)
        if self.opacity_reg is None:
            self.opacity_reg = preset
        if self.scale_reg is None:
            self.scale_reg = preset


def scaled(value: int, total_steps: int) -> int:
    """A step count of the 30k reference schedule, scaled to a run of ``total_steps``."""
    return max(1, int(round(value * total_steps / REFERENCE_STEPS)))


class SplatMethod(BaseMethod):
    """Trains :class:`GaussianSplats` on a scene, one view per step, with gsplat's densification strategies.

    Examples:
        The :class:`render3d.train.Trainer` builds the method from its name (``TrainConfig.method``) and config:

        >>> from render3d.train import TrainConfig, Trainer
        >>> Trainer(TrainConfig(method="splat", steps=30_000), SplatConfig(strategy="mcmc")).run()  # doctest: +SKIP

        The method contract by hand (:mod:`render3d.methods`), on a small rendering of the bundled scene:

        >>> import tempfile
        >>> from render3d.datasets import load_scene
        >>> from render3d.datasets.synthetic import generate_scene
        >>> tmp = tempfile.TemporaryDirectory()
        >>> scene = load_scene(generate_scene(tmp.name + "/scene", resolution=16, n_train=4, n_val=1, n_test=1))
        >>> method = SplatMethod.create(SplatConfig(init_points=100, sh_degree=0), scene, "torch", torch.device("cpu"),
        ...                             total_steps=10, seed=0)
        >>> method.model.num_gaussians  # random Gaussians: this scene has no sparse points
        100
        >>> method.before_step(0)
        >>> out = method.losses(0, method.next_batch(0))  # the Trainer backpropagates their sum and steps optimizers()
        >>> sorted(out.losses), out.outputs["rgb"].shape
        (['l1', 'ssim'], torch.Size([1, 16, 16, 3]))
        >>> method.model.render(scene.test.cameras).rgb.shape
        torch.Size([1, 16, 16, 3])
        >>> tmp.cleanup()
    """

    name = "splat"
    description = "3D Gaussian Splatting"
    config_type = SplatConfig

    def __init__(self, config: SplatConfig, model: GaussianSplats, scene_scale: float, total_steps: int,
                 batches: ViewBatcher) -> None:
        self.config = config
        self.model = model
        self.scene_scale = scene_scale
        self.total_steps = total_steps
        self.batches = batches
        # gsplat's rule for a global batch of BS views: learning rates x sqrt(BS), Adam's eps / sqrt(BS),
        # betas 1 - BS (1 - beta), at least 0; BS = 1 leaves the 3DGS values unchanged
        self.global_batch = batches.batch_size * dist.world_size()
        c = config
        self.strategy = make_strategy(
            c.strategy,
            refine_start=scaled(c.refine_start, total_steps),
            refine_stop=scaled(c.refine_stop, total_steps),
            refine_every=c.refine_every,
            reset_every=scaled(c.reset_every, total_steps),
            grow_grad2d=c.grow_grad2d,
            cap_max=c.cap_max,
        )
        self._optimizers = self._make_optimizers()
        self.strategy.check_sanity(model.params, self._optimizers)
        # per-image appearance: trained with the Gaussians, but not one of gsplat's parameter groups
        self.appearance = make_appearance(c.appearance, len(batches.split), scene_scale)
        if self.appearance is not None:
            self.appearance.to(model.params["means"].device)
        self._appearance_optimizers = self._make_appearance_optimizers()
        self.poses = PoseLearning(len(batches.split), scene_scale, c.lr_pose, c.pose_opt_start, total_steps,
                                  model.params["means"].device) if c.pose_opt else None
        self._real_steps = RealStepCounter()  # densification keeps its cadence in real steps (see periodic_step)
        self.strategy_state = (
            self.strategy.initialize_state(scene_scale=scene_scale)
            if c.strategy == "default"
            else self.strategy.initialize_state()
        )

    @classmethod
    def create(
        cls, config: SplatConfig, scene: Any, backend: str, device: torch.device, total_steps: int, seed: int, batch_size: int = 0
    ) -> "SplatMethod":
        """Initialise Gaussians from the scene's sparse points, or uniformly in its bounds; ``batch_size``
        views per step (per rank; 0: one)."""
        generator = torch.Generator().manual_seed(seed)
        if scene.points is not None and len(scene.points) > 0:
            points = scene.points.float()
            colors = scene.point_colors.float() / 255.0 if scene.point_colors is not None else torch.full_like(points, 0.5)
        else:
            points, colors = random_points(scene.bounds, config.init_points, generator)
        params = init_params(points, colors, config.sh_degree, config.init_opacity, config.init_scale).to(device)
        settings = RasterSettings(near_plane=config.near_plane, packed=config.packed, antialiased=config.antialiased)
        model = GaussianSplats(params, config.sh_degree, backend, scene.background.to(device), settings).to(device)
        batches = ViewBatcher(scene.train, device, seed, batch_size or 1, scene.background, config.random_background)
        return cls(config, model, scene.scene_scale, total_steps, batches)

    @classmethod
    def load_model(cls, config: SplatConfig, state: dict, backend: str, device: torch.device) -> GaussianSplats:
        """A renderable model from :meth:`state_dict` output (no optimisers)."""
        return GaussianSplats.from_state(state["model"], backend).to(device)

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        lrs = {
            "means": c.lr_means * self.scene_scale,
            "scales": c.lr_scales,
            "quats": c.lr_quats,
            "opacities": c.lr_opacities,
            "sh0": c.lr_sh0,
            "shN": c.lr_shN,
        }
        bs = self.global_batch
        return {
            name: adam([{"params": self.model.params[name], "lr": lr * math.sqrt(bs), "name": name}],
                       eps=1e-15 / math.sqrt(bs), betas=(max(0.0, 1 - bs * (1 - 0.9)), max(0.0, 1 - bs * (1 - 0.999))))
            for name, lr in lrs.items()
        }

    def _make_appearance_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return appearance_optimizers(self.appearance, self.config.lr_appearance, self.config.lr_appearance_mlp)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per parameter group (gsplat's strategies edit them when Gaussians are added or removed), and the
        per-image appearance's and pose corrections' when they are on."""
        poses = {} if self.poses is None else {"poses": self.poses.optimizer}
        return {**self._optimizers, **self._appearance_optimizers, **poses}

    def refined_train_cameras(self) -> Optional[Cameras]:
        """The training cameras with their learned pose corrections (``pose_opt``), else None."""
        return None if self.poses is None else self.poses.refined(self.batches.split.cameras)

    def before_step(self, step: int) -> None:
        """Exponential decay of the position learning rate (to ``lr_means_final`` of it over the run) and SH warm-up."""
        lr0 = self.config.lr_means * self.scene_scale * math.sqrt(self.global_batch)
        for group in self._optimizers["means"].param_groups:
            group["lr"] = lr0 * self.config.lr_means_final ** (min(step, self.total_steps) / self.total_steps)
        if self.poses is not None:
            self.poses.set_learning_rate(step)
        interval = scaled(self.config.sh_degree_interval, self.total_steps)
        self.model.active_sh_degree = min(step // interval, self.model.max_sh_degree)

    def image_scale(self, step: int) -> float:
        """The scale of the training images at ``step`` (``resolution_start`` doubling to 1 by ``resolution_full``)."""
        start, full = self.config.resolution_start, self.config.resolution_full
        if start >= 1.0:
            return 1.0
        levels = math.ceil(math.log2(1.0 / start) - 1e-9)
        level = math.floor(step / self.total_steps / full * levels) if full > 0 else levels
        return min(1.0, start * 2.0 ** level)

    def next_batch(self, step: int) -> Batch:
        return downscaled(self.batches.next(), self.image_scale(step))

    def render_views(self, cameras: Cameras) -> dict[str, Tensor]:
        """Differentiable renders of ``cameras`` for loss terms."""
        colors, depth, alphas, _ = self.model.rasterize(cameras)
        return {"rgb": colors, "depth": depth, "alpha": alphas}

    def losses(self, step: int, batch: Batch) -> StepOutput:
        """(1 - w) L1 + w (1 - SSIM), plus the optional opacity / scale penalties (mcmc)."""
        c = self.config
        background = None if batch.background is None else batch.background[:, None, None, :]
        transforms = None
        if self.poses is not None and self.poses.active(step):  # before it, the given poses (corrections stay put)
            correction = self.poses.correction
            transforms = correction.world_transforms(batch.cameras.c2w.to(correction.deltas), batch.indices)
        color_fn = partial(self.appearance, indices=batch.indices) if isinstance(self.appearance, AppearanceEmbedding) else None
        colors, depth, alphas, info = self.model.rasterize(batch.cameras, background=background, world_transforms=transforms,
                                                           color_fn=color_fn)
        if isinstance(self.appearance, ExposureCorrection):
            colors = self.appearance(colors, batch.indices)
        losses = {
            "l1": (1 - c.ssim_weight) * F.l1_loss(colors, batch.rgb),
            "ssim": c.ssim_weight * (1 - ssim(colors, batch.rgb)),
        }
        if c.opacity_reg > 0:
            losses["opacity_reg"] = c.opacity_reg * torch.sigmoid(self.model.params["opacities"]).mean()
        if c.scale_reg > 0:
            losses["scale_reg"] = c.scale_reg * torch.exp(self.model.params["scales"]).mean()
        if transforms is not None and c.pose_reg > 0:
            losses["pose_reg"] = c.pose_reg * self.poses.correction.penalty(batch.indices)
        outputs = {"rgb": colors, "depth": depth, "alpha": alphas}
        return StepOutput(losses, outputs, {"gaussians": float(self.model.num_gaussians)}, state=info)

    def pre_backward(self, step: int, out: StepOutput) -> None:
        self.strategy.step_pre_backward(self.model.params, self._optimizers, self.strategy_state, step, out.state)

    def post_backward(self, step: int, out: StepOutput) -> None:
        """Densify after the optimiser step (the order of gsplat's own trainer); keep the appearance zero-mean."""
        if self.appearance is not None:
            self.appearance.recenter()
        info = out.state
        step = periodic_step(self._real_steps.take(step), step, self.config.refine_every)
        if self.config.strategy == "default":
            self.strategy.step_post_backward(
                self.model.params, self._optimizers, self.strategy_state, step, info, packed=bool(info.get("packed", False))
            )
            if 0 < self.config.max_gaussians < self.model.num_gaussians:
                self._keep_most_opaque(self.config.max_gaussians)
        else:
            lr = self._optimizers["means"].param_groups[0]["lr"]
            self.strategy.step_post_backward(self.model.params, self._optimizers, self.strategy_state, step, info, lr=lr)

    def _keep_most_opaque(self, count: int) -> None:
        """Remove all but the ``count`` most opaque Gaussians, with their optimiser and densification state."""
        from gsplat.strategy.ops import remove

        opacities = self.model.params["opacities"].detach().reshape(-1)
        keep = torch.topk(opacities, count, sorted=False).indices
        drop = torch.ones_like(opacities, dtype=torch.bool)
        drop[keep] = False
        remove(self.model.params, self._optimizers, self.strategy_state, drop)

    def stats(self) -> dict[str, float]:
        """Numbers for progress bars and the viewer."""
        return {"gaussians": float(self.model.num_gaussians), "sh_degree": float(self.model.active_sh_degree)}

    def state_dict(self) -> dict:
        """Model, optimiser, strategy and batch-order state for a resumable checkpoint."""
        return {
            "model": self.model.export_state(),
            "optimizers": {k: opt.state_dict() for k, opt in self._optimizers.items()},
            "strategy_state": {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in self.strategy_state.items()},
            "batches": self.batches.state_dict(),
            **({} if self.appearance is None else {"appearance": appearance_state(self.appearance, self._appearance_optimizers)}),
            **({} if self.poses is None else self.poses.state_dict(self.batches.split.cameras)),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (parameter shapes come from the checkpoint)."""
        device = self.model.params["means"].device
        restored = GaussianSplats.from_state(state["model"], self.model.backend).to(device)
        self.model.params = restored.params
        self.model.active_sh_degree = restored.active_sh_degree
        self._optimizers = self._make_optimizers()
        for k, opt in self._optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.strategy_state = {
            k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in state["strategy_state"].items()
        }
        self.batches.load_state_dict(state["batches"])
        if self.appearance is not None and "appearance" in state:
            self._appearance_optimizers = self._make_appearance_optimizers()
            load_appearance_state(self.appearance, self._appearance_optimizers, state["appearance"])
        if self.poses is not None:
            self.poses.load_state_dict(state)
