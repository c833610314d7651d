"""One run loader for every command: a run folder, a checkpoint, a reference-3DGS ``.ply`` or a ``.splat``.

Each loads into a renderable model plus whatever context exists: the training data (cameras,
images, sparse points) of a checkpoint whose dataset is still on disk, and the box the
content occupies. ``eval``, ``render``, ``export`` and ``view`` all load through
:func:`load_run`, so each accepts all four kinds of input.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.errors import Render3DError
from render3d.protocol import Bounded, SceneModel

SPLAT_SUFFIXES = (".ply", ".splat")


@dataclass
class LoadedRun:
    """A renderable model and its context.

    Attributes:
        model: the scene model (``render(cameras, mode)``).
        source: the file or folder it was loaded from.
        run_dir: where outputs of commands go (the run folder; ``runs/<file stem>/`` for a loose .ply / .splat).
        name: a short title.
        method: the method that trained it (``splat``, ``nerf``, ...), or ``ply`` / ``splat`` for loose files.
        step: its training step, when known.
        scene: the training data, when the run has a dataset and it is still on disk.
        bounds: ``[2, 3]`` box holding the content.
    """

    model: SceneModel
    source: Path
    run_dir: Path
    name: str
    method: str
    step: Optional[int] = None
    scene: Any = None
    bounds: Tensor = dataclasses.field(default_factory=lambda: torch.tensor([[-1.0] * 3, [1.0] * 3]))

    def require_scene(self, what: str) -> Any:
        """The run's dataset, or a one-line error saying that ``what`` needs it."""
        if self.scene is None:
            kind = "file" if self.source.suffix.lower() in SPLAT_SUFFIXES else "run"
            raise Render3DError(f"{what} needs the training cameras and images, and the {kind} {self.source} has none on disk: "
                                f"pass a run folder whose dataset is still there")
        return self.scene


def content_bounds(model: SceneModel) -> Tensor:
    """The box holding a model's content (:class:`~render3d.protocol.Bounded`), else the unit cube."""
    if isinstance(model, Bounded):
        return model.content_bounds().detach().float().cpu()
    return torch.tensor([[-1.0] * 3, [1.0] * 3])


def _scene_of(ckpt: dict, required: bool) -> Any:
    """The checkpoint's dataset, or None (with one warning) when it is gone and not required."""
    from render3d.train import TrainConfig, load_data

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    try:
        return load_data(config)
    except Render3DError as exc:
        if required:
            raise
        warnings.warn(f"showing the model without its training cameras and images: {exc}")
        return None


def with_refined_poses(scene: Any, ckpt: dict, file: Path) -> Any:
    """``scene`` with the training poses the run refined (``--splat.pose-opt``), where its checkpoint holds them."""
    c2w = ckpt.get("method_state", {}).get("train_c2w")
    if c2w is None:
        return scene
    cameras = scene.train.cameras
    if not isinstance(c2w, Tensor) or tuple(c2w.shape) != (len(cameras), 4, 4) or not bool(torch.isfinite(c2w).all()):
        warnings.warn(f"{file} holds refined poses that do not fit the {len(cameras)} training images of {scene.root}: "
                      f"showing the dataset's poses")
        return scene
    refined = dataclasses.replace(cameras, c2w=c2w.to(cameras.c2w))
    return dataclasses.replace(scene, train=dataclasses.replace(scene.train, cameras=refined))


def _load_checkpoint_run(path: Path, backend: str, dataset: str) -> LoadedRun:
    from render3d.backend import device_for
    from render3d.checkpoints import reading_contents
    from render3d.methods import model_from_checkpoint
    from render3d.train import find_checkpoint, load_checkpoint

    file = find_checkpoint(path)
    ckpt = load_checkpoint(file)
    with reading_contents(file):
        model = model_from_checkpoint(ckpt, backend, device_for(backend))
    scene = None if dataset == "skip" else _scene_of(ckpt, dataset == "required")
    if scene is not None:
        scene = with_refined_poses(scene, ckpt, file)
    bounds = scene.bounds.float().cpu() if scene is not None else content_bounds(model)
    name = f"{ckpt['method']} step {ckpt['step']} ({file.parent.name})"
    return LoadedRun(model, file, file.parent, name, ckpt["method"], int(ckpt["step"]), scene, bounds)


def _load_splat_file(path: Path, backend: str) -> LoadedRun:
    from render3d.backend import device_for
    from render3d.splat.ply import load_ply, load_splat

    reader = load_ply if path.suffix.lower() == ".ply" else load_splat
    model = reader(path, backend=backend).to(device_for(backend))
    run_dir = Path("runs") / path.stem
    return LoadedRun(model, path, run_dir, path.name, path.suffix.lower().lstrip("."), None, None, content_bounds(model))


def load_run(path: str | Path, backend: str = "auto", dataset: str = "optional") -> LoadedRun:
    """Load a run folder, checkpoint ``.pt``, reference-3DGS ``.ply`` or ``.splat`` file.

    Args:
        path: what to load.
        backend: ``auto``, ``cuda`` or ``torch``.
        dataset: ``optional`` (load the run's dataset when it is on disk, warn when not),
            ``required`` (its loader's error when it cannot be loaded) or ``skip``.
    """
    from render3d.backend import resolve_backend

    p = Path(path).expanduser()
    if not p.exists():
        raise Render3DError(f"{p} does not exist: pass a run folder, a checkpoint .pt file, a 3DGS .ply or a .splat file")
    resolved = resolve_backend(backend)
    if p.is_file() and p.suffix.lower() in SPLAT_SUFFIXES:
        if dataset == "required":
            raise Render3DError(f"{p} is a Gaussian file without cameras or images: pass a run folder whose dataset is on disk")
        return _load_splat_file(p, resolved)
    return _load_checkpoint_run(p, resolved, dataset)
