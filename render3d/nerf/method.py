"""NeRF methods for the shared Trainer: ``nerf`` (hash grid, Instant-NGP style) and ``vanilla-nerf``.

Both are one :class:`NerfMethod`; a config says which field and which ray estimator
(:mod:`render3d.nerf.estimators`) to build and how the learning rate moves. Rays are
drawn from every training image (a random batch per step, from the method's own seeded
generator). With an adaptive budget (``target_samples``), the batch size follows the
number of field samples per step, as nerfacc's examples do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.batches import RayBatcher
from render3d.cameras import Cameras
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.methods import Batch, BaseMethod, StepOutput
from render3d.nerf.estimators import GridEstimator, HierarchicalEstimator, NerfaccGridEstimator, RayEstimator
from render3d.nerf.field import HashField, SceneBox, VanillaField
from render3d.nerf.model import NerfModel
from render3d.nerf.sampler import OccupancyGrid
from render3d.appearance import (AppearanceEmbedding, appearance_optimizers, appearance_state, load_appearance_state,
                                 make_appearance)
from render3d.pose_correction import PoseLearning, check_pose_options, move_rays
from render3d.training import distributed as dist
from render3d.training.loop import RealStepCounter, periodic_step


#: ``appearance`` values of the NeRF methods.
NERF_APPEARANCE_MODES = ("none", "exposure", "embedding")


@dataclass
class NerfSceneConfig:
    """Options every NeRF variant has.

    Args:
        scene (str): Scene domain: ``auto``, ``box`` (bounded by the data's bounds) or ``contract`` (unbounded,
            mip-NeRF 360); ``auto`` is ``box`` where the data has alpha, else ``contract`` (:func:`scene_box`).
            Default: "auto".
        box_padding (float): Grow the data's bounds by this fraction on each side. Default: 0.05.
        render_chunk (int): Rays per chunk when rendering images. Default: 8192.
        random_background (bool): Train on random background colours where the data has alpha. Default: True.
        appearance (str): Per-image appearance learned in training, on each ray's colour: ``none``, ``exposure`` (a gain
            per colour channel and training image) or ``embedding`` (a code per training image that a small MLP turns into
            a change of the colour, from the colour, the ray's direction and where it ends). Zero-mean over the images:
            renders, evaluation and exports show the average (:mod:`render3d.appearance`). Default: "none".
        lr_appearance (float): Learning rate of the per-image gains or codes. Default: 0.1.
        lr_appearance_mlp (float): Learning rate of the MLP of ``appearance embedding``. Default: 1e-3.
        pose_opt (bool): Learn a rigid correction of each training camera's pose (for poses from structure from
            motion): each ray moves with its camera's correction; checkpoints, the viewer and ``render --path`` use the
            corrected poses (:mod:`render3d.pose_correction`). Default: False.
        lr_pose (float): Learning rate of the pose corrections (radians and scene scales per step; decays 10x from
            ``pose_opt_start`` to the end of the run). Default: 1e-3.
        pose_reg (float): Weight of the L2 penalty on the pose corrections. Default: 1e-3.
        pose_opt_start (float): Share of the run (0-1) trained on the given poses before the corrections start
            learning. Default: 0.1.
    """

    scene: str = option("scene domain: auto, box (bounded by the data's bounds) or contract (unbounded, mip-NeRF 360)", default="auto")
    box_padding: float = option("grow the data's bounds by this fraction on each side", default=0.05)
    render_chunk: int = option("rays per chunk when rendering images", default=8192)
    random_background: bool = option("train on random background colours where the data has alpha", default=True)
    appearance: str = option("per-image appearance learned in training, on each ray's colour: none, exposure (a gain per "
                             "colour channel and training image) or embedding (a code per training image that a small MLP "
                             "turns into a change of the colour). Zero-mean over the images: renders, evaluation and exports "
                             "show the average", default="none")
    lr_appearance: float = option("learning rate of the per-image gains or codes", default=0.1)
    lr_appearance_mlp: float = option("learning rate of the MLP of --nerf.appearance embedding", default=1e-3)
    pose_opt: bool = option("learn a rigid correction of each training camera's pose (for poses from structure from "
                            "motion); checkpoints, the viewer and render --path use the corrected poses", default=False)
    lr_pose: float = option("learning rate of the pose corrections (radians and scene scales per step; decays 10x from "
                            "--nerf.pose-opt-start to the end of the run)", default=1e-3)
    pose_reg: float = option("weight of the L2 penalty on the pose corrections", default=1e-3)
    pose_opt_start: float = option("share of the run (0-1) trained on the given poses before the corrections start "
                                   "learning", default=0.1)

    def __post_init__(self) -> None:
        """Check the appearance and pose options (one line naming the option)."""
        if self.appearance not in NERF_APPEARANCE_MODES:
            raise Render3DError(f"--nerf.appearance {self.appearance!r} is not known: use {', '.join(NERF_APPEARANCE_MODES)}")
        for name in ("lr_appearance", "lr_appearance_mlp"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise Render3DError(f"--nerf.{name.replace('_', '-')} {value} must be a number above 0")
        check_pose_options("nerf", self.lr_pose, self.pose_reg, self.pose_opt_start)


@dataclass
class NerfConfig(NerfSceneConfig):
    """Options of the hash-grid NeRF (CLI: ``--nerf.NAME``).

    Args:
        scene (str): Scene domain: ``auto``, ``box`` (bounded by the data's bounds) or ``contract`` (unbounded,
            mip-NeRF 360); ``auto`` is ``box`` where the data has alpha, else ``contract`` (:func:`scene_box`).
            Default: "auto".
        box_padding (float): Grow the data's bounds by this fraction on each side. Default: 0.05.
        render_chunk (int): Rays per chunk when rendering images. Default: 8192.
        random_background (bool): Train on random background colours where the data has alpha. Default: True.
        appearance (str): Per-image appearance learned in training, on each ray's colour: ``none``, ``exposure`` (a gain
            per colour channel and training image) or ``embedding`` (a code per training image that a small MLP turns into
            a change of the colour, from the colour, the ray's direction and where it ends). Zero-mean over the images:
            renders, evaluation and exports show the average (:mod:`render3d.appearance`). Default: "none".
        lr_appearance (float): Learning rate of the per-image gains or codes. Default: 0.1.
        lr_appearance_mlp (float): Learning rate of the MLP of ``appearance embedding``. Default: 1e-3.
        pose_opt (bool): Learn a rigid correction of each training camera's pose (for poses from structure from
            motion): each ray moves with its camera's correction; checkpoints, the viewer and ``render --path`` use the
            corrected poses (:mod:`render3d.pose_correction`). Default: False.
        lr_pose (float): Learning rate of the pose corrections (radians and scene scales per step; decays 10x from
            ``pose_opt_start`` to the end of the run). Default: 1e-3.
        pose_reg (float): Weight of the L2 penalty on the pose corrections. Default: 1e-3.
        pose_opt_start (float): Share of the run (0-1) trained on the given poses before the corrections start
            learning. Default: 0.1.
        levels (int): Hash-grid levels. Default: 12.
        features (int): Features per level. Default: 2.
        log2_table_size (int): Base-2 logarithm of each level's hash table size. Default: 16.
        base_resolution (int): Coarsest grid resolution. Default: 16.
        max_resolution (int): Finest grid resolution. Default: 512.
        hidden (int): Width of the density and colour MLPs. Default: 64.
        samples_per_ray (int): Marching steps across the scene (sets the step size). Default: 128.
        target_samples (int): Field samples per step; the ray batch adapts to keep this (a ``batch_size`` of the
            Trainer fixes the batch instead). Default: 32768 (1 << 15).
        initial_rays (int): Rays in the first batch. Default: 1024.
        grid_resolution (int): Occupancy grid resolution. Default: 64.
        grid_every (int): Refresh the occupancy grid every N steps. Default: 16.
        grid_warmup (int): Steps during which every grid cell is refreshed. Default: 256.
        lr (float): Adam learning rate (warm-up over min(100, steps / 20) steps; x0.33 at 50%, 75% and 90% of the
            run). Default: 1e-2.
        weight_decay (float): Weight decay of the MLPs (none on the hash tables). Default: 1e-6.
    """

    levels: int = option("hash-grid levels", default=12)
    features: int = option("features per level", default=2)
    log2_table_size: int = option("log2 of each level's hash table size", default=16)
    base_resolution: int = option("coarsest grid resolution", default=16)
    max_resolution: int = option("finest grid resolution", default=512)
    hidden: int = option("width of the density and colour MLPs", default=64)
    samples_per_ray: int = option("marching steps across the scene (sets the step size)", default=128)
    target_samples: int = option("field samples per step; the ray batch adapts to keep this", default=1 << 15)
    initial_rays: int = option("rays in the first batch", default=1024)
    grid_resolution: int = option("occupancy grid resolution", default=64)
    grid_every: int = option("refresh the occupancy grid every N steps", default=16)
    grid_warmup: int = option("steps during which every grid cell is refreshed", default=256)
    lr: float = option("Adam learning rate (warm-up over min(100, steps/20); x0.33 at 50%, 75%, 90% of the run)", default=1e-2)
    weight_decay: float = option("weight decay of the MLPs", default=1e-6)

    def build_field(self, box: SceneBox) -> nn.Module:
        return HashField(box, self.levels, self.features, self.log2_table_size, self.base_resolution, self.max_resolution, self.hidden)

    def build_estimator(self, box: SceneBox, near: float, far: float, backend: str) -> RayEstimator:
        """nerfacc's occupancy grid on CUDA for bounded scenes, our torch grid marcher elsewhere."""
        if backend == "cuda" and not box.contracted:
            return NerfaccGridEstimator(box.aabb, near, far, self.samples_per_ray, self.grid_resolution, self.grid_every, self.grid_warmup)
        return GridEstimator(OccupancyGrid(box, self.grid_resolution), near, far, self.samples_per_ray,
                             update_every=self.grid_every, warmup_steps=self.grid_warmup)

    def ray_budget(self) -> tuple[int, int]:
        """Rays in the first batch, and field samples per step to adapt to (0: fixed)."""
        return self.initial_rays, self.target_samples

    def learning_rate(self, step: int, total_steps: int) -> float:
        fraction = step / max(total_steps, 1)
        warmup = min(1.0, (step + 1) / min(100, max(1, total_steps // 20)))
        return self.lr * warmup * 0.33 ** sum(fraction >= m for m in (0.5, 0.75, 0.9))


@dataclass
class VanillaNerfConfig(NerfSceneConfig):
    """Options of the original NeRF (CLI: ``--vanilla-nerf.NAME``); smaller than the paper's by default for CPUs.

    Args:
        scene (str): Scene domain: ``auto``, ``box`` (bounded by the data's bounds) or ``contract`` (unbounded,
            mip-NeRF 360); ``auto`` is ``box`` where the data has alpha, else ``contract`` (:func:`scene_box`).
            Default: "auto".
        box_padding (float): Grow the data's bounds by this fraction on each side. Default: 0.05.
        render_chunk (int): Rays per chunk when rendering images. Default: 4096.
        random_background (bool): Train on random background colours where the data has alpha. Default: True.
        appearance (str): Per-image appearance learned in training, on each ray's colour: ``none``, ``exposure`` (a gain
            per colour channel and training image) or ``embedding`` (a code per training image that a small MLP turns into
            a change of the colour, from the colour, the ray's direction and where it ends). Zero-mean over the images:
            renders, evaluation and exports show the average (:mod:`render3d.appearance`). Default: "none".
        lr_appearance (float): Learning rate of the per-image gains or codes. Default: 0.1.
        lr_appearance_mlp (float): Learning rate of the MLP of ``appearance embedding``. Default: 1e-3.
        pose_opt (bool): Learn a rigid correction of each training camera's pose (for poses from structure from
            motion): each ray moves with its camera's correction; checkpoints, the viewer and ``render --path`` use the
            corrected poses (:mod:`render3d.pose_correction`). Default: False.
        lr_pose (float): Learning rate of the pose corrections (radians and scene scales per step; decays 10x from
            ``pose_opt_start`` to the end of the run). Default: 1e-3.
        pose_reg (float): Weight of the L2 penalty on the pose corrections. Default: 1e-3.
        pose_opt_start (float): Share of the run (0-1) trained on the given poses before the corrections start
            learning. Default: 0.1.
        pos_frequencies (int): Positional-encoding frequencies of points. Default: 10.
        dir_frequencies (int): Positional-encoding frequencies of directions. Default: 4.
        hidden (int): MLP width (the paper: 256). Default: 128.
        layers (int): MLP depth (the paper: 8). Default: 6.
        coarse_samples (int): Stratified samples per ray. Default: 64.
        fine_samples (int): Importance samples per ray. Default: 64.
        rays_per_step (int): Rays per step (a ``batch_size`` of the Trainer replaces it). Default: 1024.
        lr (float): Adam learning rate (decays x0.1 over the run). Default: 5e-4.
        weight_decay (float): Weight decay of the MLP. Default: 0.0.
    """

    render_chunk: int = option("rays per chunk when rendering images", default=4096)
    pos_frequencies: int = option("positional-encoding frequencies of points", default=10)
    dir_frequencies: int = option("positional-encoding frequencies of directions", default=4)
    hidden: int = option("MLP width (the paper: 256)", default=128)
    layers: int = option("MLP depth (the paper: 8)", default=6)
    coarse_samples: int = option("stratified samples per ray", default=64)
    fine_samples: int = option("importance samples per ray", default=64)
    rays_per_step: int = option("rays per step", default=1024)
    lr: float = option("Adam learning rate (decays x0.1 over the run)", default=5e-4)
    weight_decay: float = option("weight decay of the MLP", default=0.0)

    def build_field(self, box: SceneBox) -> nn.Module:
        return VanillaField(box, self.pos_frequencies, self.dir_frequencies, self.hidden, self.layers)

    def build_estimator(self, box: SceneBox, near: float, far: float, backend: str) -> RayEstimator:
        return HierarchicalEstimator(near, far, self.coarse_samples, self.fine_samples)

    def ray_budget(self) -> tuple[int, int]:
        return self.rays_per_step, 0

    def learning_rate(self, step: int, total_steps: int) -> float:
        return self.lr * 0.1 ** (step / max(total_steps, 1))


def scene_box(scene: Any, mode: str, padding: float) -> SceneBox:
    """The field's domain: the data's bounds (padded), contracted when the scene is unbounded.

    ``auto`` uses a bounded box for object captures with transparent backgrounds (Blender
    style, where alpha was given) and contraction otherwise. Contracted forward-facing
    captures keep the data's bounds; contracted inward-facing ones centre on the cameras' focus.
    """
    if mode not in ("auto", "box", "contract"):
        raise Render3DError(f"unknown scene domain {mode!r}: use auto, box or contract")
    contracted = mode == "contract" or (mode == "auto" and scene.train.alpha is None)
    lo, hi = scene.bounds[0].float(), scene.bounds[1].float()
    if contracted and not scene.forward_facing:
        # inward-facing unbounded captures: the uncontracted core is the cube around the point the
        # cameras look at (half the median camera distance), not the data's whole-scene box, so the
        # object gets the grid's resolution and the background the contracted shell (mip-NeRF 360)
        from render3d.datasets.geometry import bounds_around_focus

        lo, hi = torch.from_numpy(bounds_around_focus(scene.train.cameras.c2w.detach().cpu().double().numpy())).float()
    pad = (hi - lo) * padding
    return SceneBox(torch.stack([lo - pad, hi + pad]), contracted)


def build_model(config: Any, spec: dict, backend: str) -> NerfModel:
    """The model a config describes, on the domain ``spec`` (box, contracted, near, far, background)."""
    box = SceneBox(spec["box"], spec["contracted"])
    estimator = config.build_estimator(box, spec["near"], spec["far"], backend)
    return NerfModel(config.build_field(box), estimator, spec["background"], config.render_chunk)


class NerfMethod(BaseMethod):
    """Trains a radiance field and its ray estimator on random ray batches (MSE on colour).

    Examples:
        The :class:`render3d.train.Trainer` builds the method from its name (``TrainConfig.method``) and config:

        >>> from render3d.train import TrainConfig, Trainer
        >>> Trainer(TrainConfig(method="nerf", steps=5000), NerfConfig(max_resolution=2048)).run()  # doctest: +SKIP

        The method contract by hand (:mod:`render3d.methods`), on a small rendering of the bundled scene:

        >>> import tempfile
        >>> from render3d.datasets import load_scene
        >>> from render3d.datasets.synthetic import generate_scene
        >>> tmp = tempfile.TemporaryDirectory()
        >>> scene = load_scene(generate_scene(tmp.name + "/scene", resolution=16, n_train=4, n_val=1, n_test=1))
        >>> config = NerfConfig(levels=2, log2_table_size=8, hidden=16, grid_resolution=16, samples_per_ray=32, initial_rays=64)
        >>> method = NerfMethod.create(config, scene, "torch", torch.device("cpu"), total_steps=10, seed=0)
        >>> method.before_step(0)  # refreshes the occupancy grid, sets the learning rate
        >>> batch = method.next_batch(0)  # random rays from every training image
        >>> out = method.losses(0, batch)  # the Trainer backpropagates their sum and steps optimizers()
        >>> batch.rgb.shape, sorted(out.losses)
        (torch.Size([64, 3]), ['rgb'])
        >>> method.model.render(scene.test.cameras).rgb.shape
        torch.Size([1, 16, 16, 3])
        >>> tmp.cleanup()
    """

    name = "nerf"
    description = "hash-grid NeRF (Instant-NGP style)"
    config_type: type = NerfConfig

    def __init__(self, config: Any, model: NerfModel, batches: RayBatcher, total_steps: int, spec: dict, batch_size: int = 0,
                 scene_scale: float = 1.0) -> None:
        self.config = config
        self.model = model
        self.spec = spec  # what load_model needs to rebuild the model: box, contraction, near, far, background
        self.batches = batches
        self.total_steps = total_steps
        self._real_steps = RealStepCounter()  # the occupancy grid keeps its cadence in real steps (see periodic_step)
        default_rays, self.target_samples = config.ray_budget()
        if batch_size:  # a fixed number of rays per step and rank
            self.num_rays, self.target_samples = batch_size, 0
        else:
            self.num_rays = default_rays
        # learning rates follow sqrt of the global batch, relative to the variant's default single-process batch
        self.lr_scale = math.sqrt(self.num_rays * dist.world_size() / default_rays)
        self.last_samples = 0
        self.optimizer = self._make_optimizer()
        # per-image appearance: trained with the field, on the rays' colours (as the splats' on their renders)
        box = spec["box"]
        self.appearance = make_appearance(config.appearance, len(batches.split), scene_scale=float((box[1] - box[0]).max()) / 2)
        if self.appearance is not None:
            self.appearance.to(next(model.parameters()).device)
        self._appearance_optimizers = self._make_appearance_optimizers()
        self.poses = PoseLearning(len(batches.split), scene_scale, config.lr_pose, config.pose_opt_start, total_steps,
                                  next(model.parameters()).device) if config.pose_opt else None

    @classmethod
    def create(cls, config: Any, scene: Any, backend: str, device: torch.device, total_steps: int, seed: int,
               batch_size: int = 0) -> "NerfMethod":
        """A new field for ``scene``; ``batch_size`` rays per step and rank (0: the variant's own, adaptive for ``nerf``)."""
        box = scene_box(scene, config.scene, config.box_padding)
        near, far = scene.near_far
        far = far * 1.5 if box.contracted else far
        spec = {"box": box.aabb.cpu(), "contracted": box.contracted, "near": near * 0.5, "far": far, "background": scene.background.float().cpu()}
        model = build_model(config, spec, backend).to(device)
        batches = RayBatcher(scene.train, device, seed, scene.background, config.random_background)
        return cls(config, model, batches, total_steps, spec, batch_size, float(scene.scene_scale))

    @classmethod
    def load_model(cls, config: Any, state: dict, backend: str, device: torch.device) -> NerfModel:
        model = build_model(config, state["spec"], backend)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam over every parameter of the model (field and estimator); no weight decay on the hash tables."""
        named = list(self.model.named_parameters())
        tables = [p for n, p in named if n.startswith("field.encoding")]
        others = [p for n, p in named if not n.startswith("field.encoding")]
        groups = [{"params": others, "weight_decay": self.config.weight_decay}]
        if tables:
            groups.insert(0, {"params": tables, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=self.config.lr, eps=1e-15)  # not fused: at 1200 default-scene steps fused lost 0.48 dB

    def _make_appearance_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return appearance_optimizers(self.appearance, self.config.lr_appearance, self.config.lr_appearance_mlp)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam over the model, and the per-image appearance's and pose corrections' optimisers when they are on."""
        poses = {} if self.poses is None else {"poses": self.poses.optimizer}
        return {"model": self.optimizer, **self._appearance_optimizers, **poses}

    def refined_train_cameras(self) -> Optional[Cameras]:
        """The training cameras with their learned pose corrections (``pose_opt``), else None."""
        return None if self.poses is None else self.poses.refined(self.batches.split.cameras)

    def before_step(self, step: int) -> None:
        """Refresh the estimator (occupancy grid) and set the learning rates."""
        self.model.train()
        estimator = self.model.estimator
        estimator.update(periodic_step(self._real_steps.take(step), step, estimator.update_every), self.model.field)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate(step, self.total_steps) * self.lr_scale
        if self.poses is not None:
            self.poses.set_learning_rate(step)

    def next_batch(self, step: int) -> Batch:
        return self.batches.next(self.num_rays)

    def losses(self, step: int, batch: Batch) -> StepOutput:
        """MSE on the rays' colours, the estimator's own terms, and the pose corrections' penalty (``pose_opt``)."""
        pose_reg = None
        if self.poses is not None and self.poses.active(step):  # each ray moves with its camera's correction
            batch, pose_reg = self._corrected_rays(batch)
        out = self.model.render_rays(batch.origins, batch.directions, batch.background, stratified=True, jitter=batch.jitter)
        rgb = self._with_appearance(out, batch)
        losses = {"rgb": F.mse_loss(rgb, batch.rgb), **self.model.estimator.losses(out, batch.rgb)}
        if pose_reg is not None and self.config.pose_reg > 0:
            losses["pose_reg"] = self.config.pose_reg * pose_reg
        outputs = {"rgb": rgb, "depth": out.distance * batch.z_scale, "alpha": out.alpha}
        stats = {"samples_per_ray": out.num_samples / max(len(batch.rgb), 1)}
        return StepOutput(losses, outputs, stats, state=out.num_samples)

    def _corrected_rays(self, batch: Batch) -> tuple[Batch, Tensor]:
        """``batch`` with each ray carried by its camera's correction (differentiably), and the penalty of the
        corrections of the images it drew."""
        correction = self.poses.correction
        images, image_of_ray = torch.unique(batch.indices, return_inverse=True)
        c2w = self.batches.split.cameras.c2w[images].to(correction.deltas)
        motions = correction.camera_motions(c2w, images)[image_of_ray.to(c2w.device)]
        origins, directions = move_rays(motions, batch.origins.to(c2w), batch.directions.to(c2w))
        return replace(batch, origins=origins.to(batch.origins), directions=directions.to(batch.directions)), correction.penalty(images)

    def _with_appearance(self, out: Any, batch: Batch) -> Tensor:
        """The rays' colours ``[R, 3]`` with their images' appearance (``appearance``), else as rendered."""
        if isinstance(self.appearance, AppearanceEmbedding):
            ends = batch.origins + batch.directions * out.distance.reshape(-1, 1)
            return self.appearance.on_rays(out.rgb, ends, batch.directions, batch.indices)
        if self.appearance is not None:
            return self.appearance(out.rgb[:, None, None], batch.indices)[:, 0, 0]
        return out.rgb

    def post_backward(self, step: int, out: StepOutput) -> None:
        """Adapt the ray batch so the next step evaluates about ``target_samples`` field samples (per rank:
        the ranks' mean count, so they all choose the same batch); keep the per-image gains zero-mean."""
        if self.appearance is not None:
            self.appearance.recenter()
        num_samples = int(dist.mean_over_ranks(float(out.state)))
        if self.target_samples and num_samples > 0:
            self.num_rays = int(min(max(self.num_rays * self.target_samples / num_samples, 256), 1 << 16))
        self.last_samples = num_samples

    def render_views(self, cameras: Cameras) -> dict[str, Tensor]:
        """Differentiable renders of whole (small) views for loss terms."""
        views = [self.model.render_camera(cameras, i) for i in range(len(cameras))]
        rgb, depth, alpha = (torch.stack(parts) for parts in zip(*views))
        return {"rgb": rgb, "depth": depth, "alpha": alpha}

    def stats(self) -> dict[str, float]:
        return {"rays": float(self.num_rays), "samples": float(self.last_samples)}

    def state_dict(self) -> dict:
        return {
            "spec": self.spec,
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "num_rays": self.num_rays,
            "batches": self.batches.state_dict(),
            **({} if self.appearance is None else {"appearance": appearance_state(self.appearance, self._appearance_optimizers)}),
            **({} if self.poses is None else self.poses.state_dict(self.batches.split.cameras)),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_rays = int(state["num_rays"])
        self.batches.load_state_dict(state["batches"])
        if self.appearance is not None and "appearance" in state:
            self._appearance_optimizers = self._make_appearance_optimizers()
            load_appearance_state(self.appearance, self._appearance_optimizers, state["appearance"])
        if self.poses is not None:
            self.poses.load_state_dict(state)


class VanillaNerfMethod(NerfMethod):
    """The original NeRF: positional-encoding MLP, stratified + importance sampling (one network).

    Examples:
        >>> from render3d.train import TrainConfig, Trainer
        >>> Trainer(TrainConfig(method="vanilla-nerf", steps=20_000), VanillaNerfConfig(hidden=256, layers=8)).run()  # doctest: +SKIP

        One step's losses by hand, on a small rendering of the bundled scene:

        >>> import tempfile
        >>> from render3d.datasets import load_scene
        >>> from render3d.datasets.synthetic import generate_scene
        >>> tmp = tempfile.TemporaryDirectory()
        >>> scene = load_scene(generate_scene(tmp.name + "/scene", resolution=16, n_train=4, n_val=1, n_test=1))
        >>> config = VanillaNerfConfig(hidden=16, layers=2, coarse_samples=8, fine_samples=8, rays_per_step=64)
        >>> method = VanillaNerfMethod.create(config, scene, "torch", torch.device("cpu"), total_steps=10, seed=0)
        >>> method.before_step(0)
        >>> sorted(method.losses(0, method.next_batch(0)).losses)  # the fine and the coarse samples' colour
        ['coarse_rgb', 'rgb']
        >>> tmp.cleanup()
    """

    name = "vanilla-nerf"
    description = "the original NeRF MLP"
    config_type = VanillaNerfConfig
