"""Training zoo models on the shared loop (:class:`render3d.training.TrainLoop`): random
batches, progress bar, time budget, checkpoints, Ctrl-C / SIGTERM, resume.

A run folder holds ``model.pt`` (model, optimisers, step, RNG state, data name: one file),
``config.json`` and ``history.json`` (loss per logged step). Resuming continues the same
random streams, so an interrupted run ends where an uninterrupted one would.

Before the first step the trainer counts the FLOPs of one training step and measures a
2048x2048 float32 matmul, so every run records its GFLOP/s beside the machine's practical peak
at that moment (``info["step_gflop"]``, ``info["matmul_gflops"]``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch

from render3d.checkpoints import reading_contents
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.files import write_json
from render3d.training import Callback, TrainLoop
from render3d.training import distributed as dist
from render3d.training.random_stream import RandomStream
from render3d.training.run_dir import default_run_path, run_dir_for
from render3d.zoo.base import ZOO_CHECKPOINT_NAME, ModelConfig, ZooModel, get_model_class, read_checkpoint
from render3d.zoo.data import SOURCES, ImageData, load_images


@dataclass
class ZooTrainConfig:
    """Options shared by every zoo model (CLI: ``render3d zoo train MODEL --NAME``).

    A ``--resume`` may give ``steps``, ``budget``, ``save_every``, ``log_every``, ``threads`` and ``progress`` again to
    change them (see :meth:`ZooTrainer.resume`); every other option of a resumed run comes from its checkpoint.

    Args:
        data (str): ``fashion-mnist``, ``faces``, ``scene``, ``scene-patches``, or a folder of images. Default:
            "fashion-mnist".
        size (Optional[int]): Image size (a multiple of 4); None: 28 for ``fashion-mnist``, 32 otherwise. Default: None.
        steps (int): Training steps (batches); 0: no step limit, the budget decides. Default: 0.
        budget (float): Stop after this many seconds of training (0: no limit); ``steps`` still caps it. Default: 300.0.
        batch_size (int): Images per batch (0: the model's default, 32 for diffusion and 64 for the others). Default: 0.
        out (Optional[str]): Run folder; None: ``runs/zoo-<data>-<model>-<time>``. Default: None.
        seed (int): Random seed; the same seed gives the same run. Default: 0.
        save_every (int): Write the checkpoint every N steps (and at the end and on Ctrl-C). Default: 500.
        log_every (int): Record the loss in ``history.json`` every N steps. Default: 10.
        threads (int): Torch CPU threads (0: torch's default). Default: 0.
        progress (bool): Show a progress bar. Default: True.
        overwrite (bool): Train into an ``out`` folder that already holds a zoo run, replacing it. Default: False.
    """

    data: str = option("fashion-mnist, faces, scene, scene-patches, or a folder of images", default="fashion-mnist")
    size: Optional[int] = option("image size (multiple of 4); 28 for fashion-mnist, 32 otherwise", default=None)
    steps: int = option("training steps (batches); 0: no step limit, the budget decides", default=0, resumable=True)
    budget: float = option("stop after this many seconds of training (0: no limit); --steps still caps it", default=300.0, resumable=True)
    batch_size: int = option("images per batch (0: the model's default, 32 for diffusion and 64 for the others)", default=0)
    out: Optional[str] = option("run folder; runs/zoo-<data>-<model>-<time> when omitted", default=None)
    seed: int = option("random seed; the same seed gives the same run", default=0)
    save_every: int = option("write the checkpoint every N steps (and at the end and on Ctrl-C)", default=500, resumable=True)
    log_every: int = option("record the loss in history.json every N steps", default=10, resumable=True)
    threads: int = option("torch CPU threads (0: torch's default)", default=0, resumable=True)
    progress: bool = option("show a progress bar", default=True, resumable=True)
    overwrite: bool = option("train into an --out folder that already holds a zoo run, replacing it", default=False)


class ZooTrainer(TrainLoop):
    """Trains one zoo model on one image source.

    Examples:
        >>> import tempfile
        >>> from render3d.zoo import load
        >>> from render3d.zoo.ae import AEConfig
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = ZooTrainConfig(data="faces", size=8, steps=2, batch_size=8, progress=False, out=tmp.name + "/run")
        >>> trainer = ZooTrainer("ae", config, AEConfig(hidden=8, latent=4))
        >>> trainer.run()["steps"]
        2
        >>> sorted(path.name for path in trainer.run_dir.iterdir())
        ['config.json', 'history.json', 'model.pt']
        >>> load(trainer.run_dir).sample(3).shape
        torch.Size([3, 1, 8, 8])
        >>> tmp.cleanup()
    """

    def __init__(self, model_name: str, config: ZooTrainConfig, model_config: Optional[ModelConfig] = None,
                 data: Optional[ImageData] = None, callbacks: Optional[list[Callback]] = None, resuming: bool = False) -> None:
        if config.steps < 0 or config.batch_size < 0 or not config.budget >= 0:
            raise Render3DError("--steps, --batch-size and --budget must be at least 0")
        if not config.steps and not config.budget:
            raise Render3DError("--steps 0 and --budget 0 would train forever: set one of them")
        super().__init__(budget_seconds=config.budget, save_every=config.save_every, log_every=config.log_every,
                         progress=config.progress, callbacks=callbacks, threads=config.threads)
        if config.data not in SOURCES and Path(config.data).expanduser().is_dir():  # absolute, so --resume works from any folder
            config = replace(config, data=str(Path(config.data).expanduser().resolve()))  # a copy: the caller's is kept
        self.config = config
        self.data = data if data is not None else load_images(config.data, config.size)
        model_cls = get_model_class(model_name)
        self.batch_size = config.batch_size or model_cls.default_batch_size
        self.random = RandomStream(config.seed)
        with self.random.active():  # every rank builds the same model
            self.model: ZooModel = model_cls(model_config or model_cls.config_type(), self.data.spec)
            self.model.optimizers = self.model.configure_optimizers()
        default = default_run_path("zoo", self.data.name, model_name)
        self.run_dir = run_dir_for(config.out, default, ZOO_CHECKPOINT_NAME, resuming=resuming, overwrite=config.overwrite,
                                   what="zoo run")
        self.total_steps = config.steps or math.inf  # (the progress bar then shows no ETA)
        self.desc = f"zoo {model_name}"
        self.sampler = torch.Generator().manual_seed(config.seed)
        if dist.rank() > 0:  # ranks > 0 draw their own noise (diffusion steps, ...)
            self.random = RandomStream(config.seed + 7919 * dist.rank())
        self.step_gflop: Optional[float] = None
        self.matmul_gflops: Optional[float] = None

    # ----- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / ZOO_CHECKPOINT_NAME

    def state_dict(self) -> dict:
        self.model.info = {
            "data": self.config.data, "data_name": self.data.name, "data_note": self.data.note,
            "steps": self.step, "train_seconds": round(self.train_seconds, 2), "batch_size": self.batch_size,
            "step_gflop": self.step_gflop, "matmul_gflops": self.matmul_gflops, "threads": torch.get_num_threads(),
            "train_config": asdict(self.config),
            "trainer": {"sampler": self.sampler.get_state(), "rng": self.random.state_dict(), "history": self.history},
        }
        return self.model.checkpoint()

    def save(self) -> Path:
        """Write ``model.pt`` now."""
        return self.save_checkpoint()

    @classmethod
    def resume(cls, path: str | Path, data: Optional[ImageData] = None, **overrides: Any) -> "ZooTrainer":
        """Continue the run in ``path`` (``overrides``: steps, budget, progress, ...).

        The budget counts the run's training seconds so far; a new ``steps`` without a new
        ``budget`` lifts the time limit (else a finished 5-minute run could not be extended).
        """
        if "steps" in overrides and "budget" not in overrides:
            overrides["budget"] = 0.0
        ckpt = read_checkpoint(path)
        file = Path(path) / ZOO_CHECKPOINT_NAME if Path(path).is_dir() else Path(path)
        with reading_contents(file, "zoo checkpoint"):
            info = ckpt.get("info", {})
            if "trainer" not in info:
                raise Render3DError(f"{path} was saved without its training state (model.save): it can be loaded but not resumed")
            config = ZooTrainConfig(**{**info["train_config"], "out": str(file.parent), **overrides})
            model_config = get_model_class(ckpt["model"]).config_type(**ckpt["model_config"])
        trainer = cls(ckpt["model"], config, model_config, data, resuming=True)
        with reading_contents(file, "zoo checkpoint"):
            trainer.model = ZooModel.from_checkpoint(ckpt)
            if not trainer.model.optimizers:
                trainer.model.optimizers = trainer.model.configure_optimizers()
            trainer.step = int(info["steps"])
            trainer.train_seconds = float(info["train_seconds"])
            trainer.sampler.set_state(info["trainer"]["sampler"])
            trainer.random.load_state_dict(info["trainer"]["rng"])
            trainer.history = list(info["trainer"]["history"])
        return trainer

    # ----- training -----------------------------------------------------------------------
    def begin(self) -> None:
        super().begin()
        self.measure_speed()
        write_json({"model": self.model.name, "train": asdict(self.config), self.model.name: asdict(self.model.config),
                    "data": self.data.summary(), "world_size": dist.world_size()}, self.run_dir / "config.json")

    def synced_parameters(self) -> list:
        return list(self.model.parameters()) + [b for b in self.model.buffers() if b.is_floating_point()]

    def measure_speed(self) -> None:
        """FLOPs of one training step (on a copy of the model) and the machine's matmul GFLOP/s now."""
        from render3d.zoo.perf import matmul_gflops, step_flops

        rng = torch.get_rng_state()
        x, y = self.data.batch(torch.arange(self.batch_size) % len(self.data.train))
        self.step_gflop = round(step_flops(self.model, x, y) / 1e9, 3)
        torch.set_rng_state(rng)  # counting must not change the run's random stream
        self.matmul_gflops = round(matmul_gflops(), 1)

    def train_one_step(self) -> dict[str, float]:
        """One ``fit`` on this rank's share of a global batch drawn (and augmented) identically on every rank."""
        b = self.batch_size
        index = torch.randint(0, len(self.data.train), (b * dist.world_size(),), generator=self.sampler)
        x, y = self.data.batch(index, self.sampler)
        mine = slice(dist.rank() * b, (dist.rank() + 1) * b)
        x, y = x[mine], (y[mine] if y is not None else None)
        stats = self.model.fit(x, y)  # in the run's random stream (noise, dropout, ...): see TrainLoop.step_context
        dist.average_buffers(self.model)  # running statistics of this rank's share -> of the global batch
        self.check_finite(stats["loss"])
        self.step += 1
        return stats

    def finish(self) -> dict[str, Any]:
        write_json(self.history, self.run_dir / "history.json")
        return {"model": self.model.name, "data": self.data.name, "steps": self.step,
                "train_seconds": round(self.train_seconds, 2), **self.last_stats, **self.model.stats()}
