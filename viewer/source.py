"""What the viewer shows: a scene model plus optional context (training cameras, points),
from a live :class:`Trainer`, anything :func:`render3d.runs.load_run` loads (a run folder,
a checkpoint, a reference 3DGS PLY, a .splat), or a dataset folder before training (its
cameras and sparse points)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from render3d.cameras import Cameras
from render3d.protocol import SceneModel
from render3d.runs import LoadedRun, load_run


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


def from_run(run: LoadedRun) -> ViewerContent:
    """Content of a loaded run, checkpoint or Gaussian file (:func:`render3d.runs.load_run`)."""
    content = ViewerContent(name=run.name, run_dir=run.run_dir, bounds=run.bounds, static_model=run.model)
    if run.scene is not None:
        scene = run.scene
        content.train_cameras, content.train_images = scene.train.cameras, scene.train.images
        content.points, content.point_colors = scene.points, scene.point_colors
    return content


def from_dataset(folder: Path, backend: str = "auto") -> ViewerContent:
    """A dataset folder before training: its training cameras (with thumbnails) and sparse points.

    The points are drawn as small opaque Gaussians (the splat trainer's starting sizes), so
    the scene a processed capture recovered can be checked before any training.
    """
    import torch

    from render3d.backend import device_for, resolve_backend
    from render3d.datasets import load_scene
    from render3d.splat.model import GaussianSplats, init_params

    scene = load_scene(folder)
    points, colors = scene.points, scene.point_colors
    if points is None or len(points) == 0:  # cameras only: one invisible Gaussian to render
        points, colors, opacity = scene.bounds.mean(0, keepdim=True), torch.zeros(1, 3, dtype=torch.uint8), 1e-4
    else:
        opacity = 0.95
    resolved = resolve_backend(backend)
    params = init_params(points.float(), colors.float() / 255.0, 0, init_opacity=opacity, init_scale=0.5)
    model = GaussianSplats(params, 0, resolved, scene.background).to(device_for(resolved))
    return ViewerContent(
        name=f"{folder.name}: cameras and sparse points (not trained)", run_dir=Path("runs") / f"{folder.name}-preview",
        bounds=scene.bounds.float().cpu(), static_model=model, train_cameras=scene.train.cameras,
        train_images=scene.train.images, points=scene.points, point_colors=scene.point_colors,
    )


def load_content(path: str, backend: str = "auto") -> ViewerContent:
    """A run folder, checkpoint (``.pt``), 3DGS ``.ply``, ``.splat`` or a dataset folder, with one-line errors."""
    from render3d.datasets import detect_format
    from render3d.errors import Render3DError
    from render3d.train import CHECKPOINT_NAME

    folder = Path(path).expanduser()
    if folder.is_dir() and not (folder / CHECKPOINT_NAME).is_file():
        try:
            detect_format(folder)
        except Render3DError:
            pass  # not a dataset either: load_run says what it expected
        else:
            return from_dataset(folder, backend)
    return from_run(load_run(path, backend))
