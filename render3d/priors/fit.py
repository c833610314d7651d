"""``render3d prior fit``: a zoo diffusion model trained on what a sparse-view run may see."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from render3d.files import write_json

PRIOR_FILE = "prior.json"


def prior_scene(data: Optional[str], views: int, train_options: dict[str, Any]) -> Any:
    """The scene a run with ``--views views`` trains on (the same loader options, the same views)."""
    from render3d.sparse_views.selection import sparse_scene
    from render3d.train import TrainConfig, load_data

    keys = ("downscale", "test_every", "data_format")
    config = TrainConfig(data=data, **{k: train_options[k] for k in keys if k in train_options})
    scene = load_data(config)
    return sparse_scene(scene, views) if views else scene


def fit_prior(data: Optional[str], views: int, out: Path, train_options: dict[str, Any], size: int = 32, per_view: int = 200,
              include_default_scene: bool = False, budget: float = 300.0, steps: int = 100_000, seed: int = 0,
              progress: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the prior into ``out`` and record its sources in ``out/prior.json``; returns the zoo trainer's result.
    An ``out`` that already holds a prior is refused unless ``overwrite``."""
    from render3d.priors.data import prior_data
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    scene = prior_scene(data, views, train_options)
    images, sources = prior_data(scene, size, per_view, include_default_scene, seed)
    record = {"data": str(scene.root), "views": views, "size": size, "per_view": per_view, "include_default_scene": include_default_scene,
              "seed": seed, **{k: train_options[k] for k in ("downscale", "test_every", "data_format") if k in train_options},
              "sources": sources, "patches": len(images.train)}
    config = ZooTrainConfig(data=images.name, size=size, steps=steps, budget=budget, out=str(out), seed=seed, progress=progress,
                            overwrite=overwrite)
    trainer = ZooTrainer("diffusion", config, data=images)  # refuses an occupied out before anything is written
    write_json(record, Path(out) / PRIOR_FILE)
    return trainer.run()


def resume_prior(run: Path, **overrides: Any) -> dict[str, Any]:
    """Continue an interrupted ``prior fit`` from its checkpoint (the patches are rebuilt from ``prior.json``)."""
    import json

    from render3d.errors import Render3DError
    from render3d.priors.data import prior_data
    from render3d.zoo.train import ZooTrainer

    file = Path(run) / PRIOR_FILE
    if not file.is_file():
        raise Render3DError(f"{run} is not a prior run (no {PRIOR_FILE}): pass the folder `render3d prior fit --out` wrote")
    record = json.loads(file.read_text())
    scene = prior_scene(record["data"], record["views"], record)
    images, _ = prior_data(scene, record["size"], record["per_view"], record["include_default_scene"], record["seed"])
    return ZooTrainer.resume(run, data=images, **overrides).run()
