"""What the viewer shows: a scene model plus optional context (training cameras, points),
from a live :class:`Trainer`, a run folder / checkpoint, or a reference 3DGS PLY."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.errors import Render3DError
from render3d.protocol import SceneModel


@dataclass
class ViewerContent:
    """Everything the viewer needs; ``model`` is read fresh on each render (training swaps it).

    Attributes:
        name: shown in the panel title.
        run_dir: where camera paths, videos and exports are written.
        bounds: ``[2, 3]`` box holding the content (initial crop box and camera).
        train_cameras / train_images: the training views (frustums with thumbnails), if known.
        points / point_colors: sparse points (``[P, 3]`` float, ``[P, 3]`` uint8), if known.
        trainer: the live trainer when watching training.
        lock: held while rendering; the trainer's own lock when training.
    """

    name: str
    run_dir: Path
    bounds: Tensor
    static_model: Optional[SceneModel] = None
    train_cameras: Optional[Cameras] = None
    train_images: Optional[Tensor] = None
    points: Optional[Tensor] = None
    point_colors: Optional[Tensor] = None
    trainer: Any = None
    lock: Any = field(default_factory=threading.RLock)

    @property
    def model(self) -> SceneModel:
        """The model to render now (the trainer's current one while training)."""
        if self.trainer is not None:
            return self.trainer.method.model
        assert self.static_model is not None
        return self.static_model


def _splat_bounds(model: Any) -> Tensor:
    """The box holding the central 98% of a splat model's Gaussian centres."""
    means = model.params["means"].detach().float().cpu()
    if len(means) == 0:
        return torch.tensor([[-1.0] * 3, [1.0] * 3])
    q = torch.quantile(means[torch.randperm(len(means))[:100_000]], torch.tensor([0.01, 0.99]), dim=0)
    return q


def from_trainer(trainer: Any) -> ViewerContent:
    """Content of a live training run (renders share ``trainer.lock``)."""
    scene = trainer.scene
    return ViewerContent(
        name=f"{trainer.config.method} on {Path(str(scene.root)).name if scene.root else 'scene'}",
        run_dir=Path(trainer.run_dir),
        bounds=scene.bounds.float().cpu(),
        train_cameras=scene.train.cameras,
        train_images=scene.train.images,
        points=scene.points,
        point_colors=scene.point_colors,
        trainer=trainer,
        lock=trainer.lock,
    )


def from_ply(path: Path, backend: str) -> ViewerContent:
    """A Gaussian PLY in the reference 3DGS layout (no cameras: the viewer frames the Gaussians)."""
    from render3d.backend import device_for
    from render3d.splat.ply import load_ply

    model = load_ply(path, backend=backend).to(device_for(backend))
    return ViewerContent(name=path.name, run_dir=path.resolve().parent, bounds=_splat_bounds(model), static_model=model)


def from_checkpoint(path: Path, backend: str) -> ViewerContent:
    """A run folder or checkpoint file; its dataset (for cameras and points) when still on disk."""
    from render3d.backend import device_for
    from render3d.methods import model_from_checkpoint
    from render3d.train import TrainConfig, find_checkpoint, load_checkpoint, load_data

    file = find_checkpoint(path)
    ckpt = load_checkpoint(file)
    model = model_from_checkpoint(ckpt, backend, device_for(backend))
    content = ViewerContent(name=f"{ckpt['method']} step {ckpt['step']} ({file.parent.name})", run_dir=file.parent, bounds=torch.tensor([[-1.0] * 3, [1.0] * 3]), static_model=model)
    try:
        scene = load_data(TrainConfig(**ckpt["config"]))
    except Render3DError as exc:
        warnings.warn(f"showing the model without its training cameras: {exc}")
        scene = None
    if scene is not None:
        content.bounds = scene.bounds.float().cpu()
        content.train_cameras, content.train_images = scene.train.cameras, scene.train.images
        content.points, content.point_colors = scene.points, scene.point_colors
    elif hasattr(model, "params"):
        content.bounds = _splat_bounds(model)
    return content


def load_content(path: str, backend: str = "auto") -> ViewerContent:
    """A run folder, checkpoint (``.pt``) or Gaussian PLY, with one-line errors."""
    from render3d.backend import resolve_backend

    p = Path(path)
    if not p.exists():
        raise Render3DError(f"{p} does not exist: pass a run folder, a checkpoint .pt file or a Gaussian .ply file")
    resolved = resolve_backend(backend)
    if p.suffix.lower() == ".ply":
        return from_ply(p, resolved)
    return from_checkpoint(p, resolved)
