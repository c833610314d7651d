"""NeRF methods for the shared Trainer: ``nerf`` (hash grid, Instant-NGP style) and ``vanilla-nerf``.

Ray-based methods draw their rays from every training image (a random batch per step,
with their own seeded generator), so the single view the Trainer hands to
``train_step`` is not used. The batch size adapts so each step evaluates about
``target_samples`` field samples, as nerfacc's examples do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.cameras import Cameras
from render3d.nerf.field import HashField, SceneBox, VanillaField
from render3d.nerf.render import NerfaccMarcher, RayBundleOutput, TorchMarcher, render_dense
from render3d.nerf.sampler import OccupancyGrid, march_uniform, sample_pdf
from render3d.protocol import RenderOutput
from render3d.config_cli import option



@dataclass
class NerfConfig:
    """Options of the hash-grid NeRF (CLI: ``--nerf.NAME``)."""

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
    scene: str = option("scene domain: auto, box (bounded by the data's bounds) or contract (unbounded, mip-NeRF 360)", default="auto")
    box_padding: float = option("grow the data's bounds by this fraction on each side", default=0.05)
    render_chunk: int = option("rays per chunk when rendering images", default=8192)
    random_background: bool = option("train on random background colours where the data has alpha", default=True)


@dataclass
class VanillaNerfConfig:
    """Options of the original NeRF (CLI: ``--vanilla-nerf.NAME``); smaller than the paper's by default for CPUs."""

    pos_frequencies: int = option("positional-encoding frequencies of points", default=10)
    dir_frequencies: int = option("positional-encoding frequencies of directions", default=4)
    hidden: int = option("MLP width (the paper: 256)", default=128)
    layers: int = option("MLP depth (the paper: 8)", default=6)
    coarse_samples: int = option("stratified samples per ray", default=64)
    fine_samples: int = option("importance samples per ray", default=64)
    rays_per_step: int = option("rays per step", default=1024)
    lr: float = option("Adam learning rate (decays x0.1 over the run)", default=5e-4)
    scene: str = option("scene domain: auto, box or contract", default="auto")
    box_padding: float = option("grow the data's bounds by this fraction on each side", default=0.05)
    render_chunk: int = option("rays per chunk when rendering images", default=4096)
    random_background: bool = option("train on random background colours where the data has alpha", default=True)


def scene_box(scene: Any, mode: str, padding: float) -> SceneBox:
    """The field's domain: the data's bounds (padded), contracted when the scene is unbounded.

    ``auto`` uses a bounded box for object captures with transparent backgrounds (Blender
    style, where alpha was given) and contraction otherwise. Contracted forward-facing
    captures keep the data's bounds; contracted inward-facing ones centre on the cameras' focus.
    """
    if mode not in ("auto", "box", "contract"):
        from render3d.errors import Render3DError

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


class NerfModel(nn.Module):
    """A field plus its sampler; implements :class:`render3d.protocol.SceneModel`."""

    def __init__(self, field_module: nn.Module, marcher: nn.Module, background: Tensor, render_chunk: int) -> None:
        super().__init__()
        self.field = field_module
        self.marcher = marcher
        self.register_buffer("background", background.float().clone())
        self.render_chunk = render_chunk

    def render_rays(self, origins: Tensor, dirs: Tensor, background: Optional[Tensor] = None, stratified: bool = False,
                    generator: Optional[torch.Generator] = None) -> RayBundleOutput:
        """Render rays on ``background`` (``[3]`` or per ray ``[R, 3]``; the scene's when omitted)."""
        background = self.background if background is None else background
        return self.marcher.render(self.field, origins, dirs, background, stratified, generator)

    @torch.no_grad()
    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """Render every camera in chunks of rays; depth is z along the camera axis."""
        device = self.background.device
        cams = cameras.to(device)
        rgbs, depths, alphas = [], [], []
        for i in range(len(cams)):
            origins, dirs = cams.generate_rays(i)
            o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
            parts = [self.render_rays(o[s : s + self.render_chunk], d[s : s + self.render_chunk]) for s in range(0, len(o), self.render_chunk)]
            rgb = torch.cat([p.rgb for p in parts])
            alpha = torch.cat([p.alpha for p in parts])
            forward = cams.c2w[i, :3, 2]
            z = torch.cat([p.distance for p in parts]) * (d @ forward)[:, None]
            shape = (cams.height, cams.width)
            rgbs.append(rgb.reshape(*shape, 3))
            alphas.append(alpha.reshape(*shape, 1))
            depths.append((z * (alpha > 1e-3)).reshape(*shape, 1))
        return RenderOutput(rgb=torch.stack(rgbs).clamp(0, 1), depth=torch.stack(depths), alpha=torch.stack(alphas))

    def extract_mesh(self, resolution: int = 128):
        """A coloured mesh of the density field (see :func:`render3d.nerf.mesh.extract_mesh`)."""
        from render3d.nerf.mesh import extract_mesh

        return extract_mesh(self, resolution=resolution)


class RaySampler:
    """Random (image, pixel) batches from a split, with the target colours and backgrounds.

    With ``random_background`` and a split that has alpha, every ray gets a random
    background colour and its target is re-composited on it (Instant-NGP's trick): the
    field cannot explain the data with a coloured haze, so empty space stays empty.
    """

    def __init__(self, split: Any, device: torch.device, seed: int, background: Tensor, random_background: bool = False) -> None:
        self.images = split.images  # uint8 [N, H, W, 3], stays on the CPU
        self.alpha = split.alpha if random_background else None  # uint8 [N, H, W, 1] or None
        self.cameras = split.cameras
        self.background = background.float().cpu()
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, count: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Origins, directions, target colours ``[count, 3]`` and background (``[3]`` or ``[count, 3]``)."""
        n, h, w = self.images.shape[:3]
        index = torch.randint(0, n, (count,), generator=self.generator)
        py = torch.randint(0, h, (count,), generator=self.generator)
        px = torch.randint(0, w, (count,), generator=self.generator)
        origins, dirs = self.cameras.rays_at_pixels(index, px, py)
        target = self.images[index, py, px].float() / 255.0
        background = self.background
        if self.alpha is not None:
            transparency = 1.0 - self.alpha[index, py, px].float() / 255.0
            background = torch.rand(count, 3, generator=self.generator)
            target = target + transparency * (background - self.background)
        return origins.to(self.device), dirs.to(self.device), target.to(self.device), background.to(self.device)


class NerfMethod:
    """Trains the hash-grid field with an occupancy-grid marcher."""

    name = "nerf"

    def __init__(self, config: Any, model: NerfModel, sampler: RaySampler, total_steps: int, model_spec: dict) -> None:
        self.config = config
        self.model = model
        self.model_spec = model_spec  # what load_model needs to rebuild the model: box, contraction, near, far
        self.sampler = sampler
        self.total_steps = total_steps
        self.num_rays = self.initial_rays(config)
        self.last_samples = 0
        self.optimizer = self._make_optimizer()

    # ----- construction ----------------------------------------------------------------------
    @staticmethod
    def initial_rays(config: NerfConfig) -> int:
        return config.initial_rays

    @staticmethod
    def build_model(config: NerfConfig, box: SceneBox, near: float, far: float, background: Tensor, backend: str) -> NerfModel:
        field_module = HashField(box, config.levels, config.features, config.log2_table_size, config.base_resolution,
                                 config.max_resolution, config.hidden)
        if backend == "cuda" and not box.contracted:
            marcher: nn.Module = NerfaccMarcher(box.aabb, near, far, config.samples_per_ray, config.grid_resolution)
        else:
            marcher = TorchMarcher(OccupancyGrid(box, config.grid_resolution), near, far, config.samples_per_ray)
        return NerfModel(field_module, marcher, background, config.render_chunk)

    @classmethod
    def create(cls, config: Any, scene: Any, backend: str, device: torch.device, total_steps: int, seed: int) -> "NerfMethod":
        box = scene_box(scene, config.scene, config.box_padding)
        near, far = scene.near_far
        far = far * 1.5 if box.contracted else far
        model = cls.build_model(config, box, near * 0.5, far, scene.background, backend).to(device)
        spec = {"box": box.aabb.cpu(), "contracted": box.contracted, "near": near * 0.5, "far": far}
        sampler = RaySampler(scene.train, device, seed, scene.background, config.random_background)
        return cls(config, model, sampler, total_steps, spec)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        field_module = self.model.field
        encoding = [p for n, p in field_module.named_parameters() if n.startswith("encoding")]
        others = [p for n, p in field_module.named_parameters() if not n.startswith("encoding")]
        groups = [{"params": others, "weight_decay": getattr(c, "weight_decay", 0.0)}]
        if encoding:
            groups.insert(0, {"params": encoding, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=c.lr, eps=1e-15)

    def _learning_rate(self, step: int) -> float:
        fraction = step / max(self.total_steps, 1)
        warmup = min(1.0, (step + 1) / min(100, max(1, self.total_steps // 20)))
        return self.config.lr * warmup * 0.33 ** sum(fraction >= m for m in (0.5, 0.75, 0.9))

    # ----- training ---------------------------------------------------------------------------
    def train_step(self, step: int, camera: Cameras, target_image: Tensor) -> dict[str, float]:
        """One step on a random batch of rays from all training images (``camera`` is unused)."""
        self.model.train()
        if step % self.config.grid_every == 0:
            self.model.marcher.update(step, self.model.field, self.config.grid_warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate(step)
        origins, dirs, target, background = self.sampler.sample(self.num_rays)
        out = self.model.render_rays(origins, dirs, background, stratified=True)
        loss = F.mse_loss(out.rgb, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._adapt_batch(out.num_samples)
        return {"loss": float(loss.item()), "samples_per_ray": out.num_samples / max(len(origins), 1)}

    def _adapt_batch(self, num_samples: int) -> None:
        target = self.config.target_samples
        if target and num_samples > 0:
            self.num_rays = int(min(max(self.num_rays * target / num_samples, 256), 1 << 16))
        self.last_samples = num_samples

    def stats(self) -> dict[str, float]:
        return {"rays": float(self.num_rays), "samples": float(self.last_samples)}

    # ----- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "kind": self.name,
            "config": asdict(self.config),
            "spec": {**self.model_spec, "background": self.model.background.cpu()},
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "num_rays": self.num_rays,
            "sampler": self.sampler.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_rays = int(state["num_rays"])
        self.sampler.generator.set_state(state["sampler"])


class VanillaNerfMethod(NerfMethod):
    """The original NeRF: positional-encoding MLP, stratified + importance sampling (one network)."""

    name = "vanilla-nerf"

    @staticmethod
    def initial_rays(config: VanillaNerfConfig) -> int:
        return config.rays_per_step

    @staticmethod
    def build_model(config: VanillaNerfConfig, box: SceneBox, near: float, far: float, background: Tensor, backend: str) -> NerfModel:
        field_module = VanillaField(box, config.pos_frequencies, config.dir_frequencies, config.hidden, config.layers)
        return NerfModel(field_module, HierarchicalMarcher(near, far, config.coarse_samples, config.fine_samples), background, config.render_chunk)

    def _learning_rate(self, step: int) -> float:
        return self.config.lr * 0.1 ** (step / max(self.total_steps, 1))

    def train_step(self, step: int, camera: Cameras, target_image: Tensor) -> dict[str, float]:
        """Fine and coarse passes are both supervised, as in the paper."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate(step)
        origins, dirs, target, background = self.sampler.sample(self.num_rays)
        fine, coarse = self.model.marcher.render_both(self.model.field, origins, dirs, background, True)
        loss = F.mse_loss(fine.rgb, target) + F.mse_loss(coarse.rgb, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_samples = fine.num_samples + coarse.num_samples
        return {"loss": float(loss.item())}


class HierarchicalMarcher(nn.Module):
    """Vanilla NeRF's sampling: stratified coarse samples, then importance samples from their weights."""

    def __init__(self, near: float, far: float, coarse: int, fine: int) -> None:
        super().__init__()
        self.near, self.far, self.coarse, self.fine = near, far, coarse, fine

    @property
    def step_size(self) -> float:
        """Spacing of the coarse samples (sets the default mesh density threshold)."""
        return (self.far - self.near) / self.coarse

    def render_both(self, field_module: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool):
        s = march_uniform(origins, dirs, self.near, self.far, self.coarse, _BoxOnly(field_module.box), stratified)
        coarse, weights = render_dense(field_module, origins, dirs, s.t_starts, s.t_ends, s.valid, background)
        bins = torch.cat([s.t_starts, s.t_ends[:, -1:]], dim=-1)
        fine_t = sample_pdf(bins, weights, self.fine, stratified)
        t = torch.sort(torch.cat([bins, fine_t], dim=-1), dim=-1).values
        valid = (t[:, 1:] > t[:, :-1]) & s.valid.any(-1, keepdim=True)
        fine, _ = render_dense(field_module, origins, dirs, t[:, :-1].contiguous(), t[:, 1:].contiguous(), valid, background)
        return fine, coarse

    def render(self, field_module: nn.Module, origins: Tensor, dirs: Tensor, background: Optional[Tensor], stratified: bool,
               generator: Optional[torch.Generator] = None) -> RayBundleOutput:
        return self.render_both(field_module, origins, dirs, background, stratified)[0]


class _BoxOnly:
    """An occupancy-free stand-in for :class:`OccupancyGrid`: clips rays to the box, keeps every sample."""

    def __init__(self, box: SceneBox) -> None:
        self.box = box

    def occupied(self, points: Tensor) -> Tensor:
        return torch.ones_like(points[:, 0], dtype=torch.bool)


def load_model(state: dict, backend: str, device: torch.device) -> NerfModel:
    """A renderable model from a checkpoint's method state."""
    spec = state["spec"]
    box = SceneBox(spec["box"], spec["contracted"])
    if state["kind"] == "vanilla-nerf":
        model = VanillaNerfMethod.build_model(VanillaNerfConfig(**state["config"]), box, spec["near"], spec["far"], spec["background"], backend)
    else:
        model = NerfMethod.build_model(NerfConfig(**state["config"]), box, spec["near"], spec["far"], spec["background"], backend)
    model.load_state_dict(state["model"])
    return model.to(device).eval()
