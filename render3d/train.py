"""One ``Trainer`` for every method: schedule, checkpoints with resume, eval, progress, events."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm import tqdm

from render3d.backend import device_for, resolve_backend
from render3d.errors import Render3DError
from render3d.evaluate import evaluate_split
from render3d.methods import get_method
from render3d.config_cli import option

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1



@dataclass
class TrainConfig:
    """Options shared by every method (CLI: ``render3d train --NAME``)."""

    data: Optional[str] = option("dataset folder (Blender, nerfstudio, COLMAP or LLFF); the bundled default scene when omitted", default=None)
    method: str = option("what to train: splat (3D Gaussian Splatting), nerf (hash-grid NeRF) or vanilla-nerf", default="splat")
    backend: str = option("auto (cuda when a GPU is present), cuda (gsplat/nerfacc kernels) or torch (pure PyTorch, any device)", default="auto")
    steps: int = option("training steps (one image per step)", default=1200)
    out: Optional[str] = option("run folder; runs/<scene>-<method>-<time> when omitted", default=None)
    resume: Optional[str] = option("continue from a run folder or checkpoint file", default=None)
    seed: int = option("random seed; the same seed gives the same result", default=0)
    eval_every: int = option("evaluate on the test split every N steps (0: only at the end)", default=0)
    save_every: int = option("write the checkpoint every N steps (and always at the end and on Ctrl-C)", default=1000)
    downscale: int = option("load images downscaled by this factor (uses images_N folders when present)", default=1)
    test_every: int = option("hold out every N-th image as test, for formats without explicit splits", default=8)
    data_format: Optional[str] = option("force a dataset format (blender, nerfstudio, colmap, llff) instead of detecting it", default=None)
    progress: bool = option("show a progress bar", default=True)
    viewer: bool = option("watch training in the web viewer (prints its URL)", default=False)
    host: str = option("viewer address; 0.0.0.0 listens on every interface", default="127.0.0.1")
    port: int = option("viewer port; a free one is used when it is taken", default=8080)


@dataclass
class TrainEvent:
    """What the trainer tells its listeners (e.g. the live viewer) after each step."""

    step: int
    total_steps: int
    loss: float
    steps_per_second: float
    stats: dict[str, float]
    eval_psnr: Optional[float] = None


def load_data(config: TrainConfig):
    """The scene named by ``config.data``, or the bundled default scene."""
    from render3d.datasets import load_scene
    from render3d.datasets.synthetic import default_scene_dir

    path = config.data if config.data is not None else default_scene_dir()
    return load_scene(path, downscale=config.downscale, test_every=config.test_every, format=config.data_format)


def default_run_dir(config: TrainConfig) -> Path:
    name = Path(config.data).resolve().name if config.data else "default-scene"
    return Path("runs") / f"{name}-{config.method}-{time.strftime('%Y%m%d-%H%M%S')}"


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file from a run folder or a file path, with a one-line error if missing."""
    p = Path(path)
    candidate = p / CHECKPOINT_NAME if p.is_dir() else p
    if not candidate.is_file():
        raise Render3DError(f"no checkpoint at {candidate}: pass a run folder holding {CHECKPOINT_NAME} or the .pt file itself")
    return candidate


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint file written by :class:`Trainer`."""
    file = find_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or truncated file
        raise Render3DError(f"cannot read checkpoint {file} ({type(exc).__name__}): it is damaged; use an earlier one or retrain") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise Render3DError(f"{file} is not a render3d checkpoint (version {CHECKPOINT_VERSION})")
    return ckpt


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(data: Any, path: Path) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Trainer:
    """Trains any registered method on a scene.

    Listeners (``add_listener``) receive a :class:`TrainEvent` after every step;
    ``lock`` is held during each step so a viewer can render between steps, and
    ``pause()`` / ``resume_training()`` stop and restart the loop.
    """

    def __init__(self, config: TrainConfig, method_config: Any, scene: Any = None) -> None:
        self.config = config
        self.method_config = method_config
        self.entry = get_method(config.method)
        self.backend = resolve_backend(config.backend)
        self.device = device_for(self.backend)
        self.scene = scene if scene is not None else load_data(config)
        if len(self.scene.train) == 0:
            raise Render3DError(f"the train split of {self.scene.root} is empty: add images or check the split files")
        self.run_dir = Path(config.out) if config.out else default_run_dir(config)
        torch.manual_seed(config.seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(config.seed)
        self.method = self.entry.method_type().create(
            method_config, self.scene, self.backend, self.device, config.steps, config.seed
        )
        self._rng = self._capture_rng()
        self.step = 0
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.order: list[int] = []
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.lock = threading.RLock()
        self._running = threading.Event()
        self._running.set()
        self._listeners: list[Callable[[TrainEvent], None]] = []

    # ----- events and control -------------------------------------------------------------
    def add_listener(self, fn: Callable[[TrainEvent], None]) -> None:
        self._listeners.append(fn)

    def pause(self) -> None:
        self._running.clear()

    def resume_training(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # ----- random state ---------------------------------------------------------------------
    def _capture_rng(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_rng(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    # ----- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "method": self.config.method,
            "config": asdict(self.config),
            "method_config": asdict(self.method_config),
            "step": self.step,
            "method_state": self.method.state_dict(),
            "rng": {**self._rng, "sampler": self.sampler.get_state(), "order": list(self.order)},
            "history": self.history,
            "train_seconds": self.train_seconds,
        }

    def save_checkpoint(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_atomic(self.state_dict(), self.checkpoint_path())
        return self.checkpoint_path()

    def load_state_dict(self, ckpt: dict) -> None:
        self.step = int(ckpt["step"])
        self.method.load_state_dict(ckpt["method_state"])
        self._rng = {k: v for k, v in ckpt["rng"].items() if k in ("torch", "cuda")}
        self.sampler.set_state(ckpt["rng"]["sampler"])
        self.order = list(ckpt["rng"]["order"])
        self.history = list(ckpt.get("history", []))
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, scene: Any = None, **overrides: Any) -> "Trainer":
        """Rebuild a trainer from a checkpoint to continue training (``render3d train --resume``)."""
        file = find_checkpoint(path)
        ckpt = load_checkpoint(file)
        config = TrainConfig(**{**ckpt["config"], "resume": str(file), "out": str(file.parent), **overrides})
        method_config = get_method(ckpt["method"]).config_type()(**ckpt["method_config"])
        trainer = cls(config, method_config, scene)
        trainer.load_state_dict(ckpt)
        return trainer

    # ----- training -----------------------------------------------------------------------
    def _next_view(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.scene.train), generator=self.sampler).tolist()
        return self.order.pop()

    def train_one_step(self) -> dict[str, float]:
        """Run one optimisation step on the next training view."""
        index = self._next_view()
        split = self.scene.train
        camera = split.cameras[index].to(self.device)
        target = split.image_float(index, self.device)
        with self.lock:
            # the trainer owns its random stream (strategies draw from torch's global one),
            # so other users of torch's RNG between steps cannot change the result
            self._restore_rng(self._rng)
            out = self.method.train_step(self.step, camera, target)
            self._rng = self._capture_rng()
        if not math.isfinite(out["loss"]):
            raise Render3DError(
                f"training diverged at step {self.step} (loss is {out['loss']}); the last good checkpoint is "
                f"{self.checkpoint_path()}: resume from it with a lower learning rate"
            )
        self.step += 1
        return out

    def run(self) -> dict[str, Any]:
        """Train to ``config.steps``, checkpointing and evaluating; returns the final metrics."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json({"train": asdict(self.config), self.config.method: asdict(self.method_config)}, self.run_dir / "config.json")
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, desc=f"train {cfg.method}", unit="step", dynamic_ncols=True)
        last_eval: Optional[float] = None
        try:
            while self.step < cfg.steps:
                self._running.wait()
                started = time.perf_counter()
                out = self.train_one_step()
                elapsed = time.perf_counter() - started
                self.train_seconds += elapsed
                self.history.append({"step": self.step, "loss": out["loss"], "seconds": self.train_seconds})
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    last_eval = self.evaluate("test", write_images=False)["psnr"]
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                stats = self.method.stats()
                event = TrainEvent(self.step, cfg.steps, out["loss"], 1.0 / max(elapsed, 1e-9), stats, last_eval)
                for listener in self._listeners:
                    listener(event)
                bar.update(1)
                bar.set_postfix(loss=f"{out['loss']:.4f}", **{k: int(v) for k, v in stats.items()})
        except KeyboardInterrupt:
            bar.close()
            self.save_checkpoint()
            raise
        bar.close()
        self.save_checkpoint()
        return self.finish()

    # ----- evaluation ---------------------------------------------------------------------
    def evaluate(self, split_name: str = "test", write_images: bool = True) -> dict[str, Any]:
        """PSNR / SSIM (and LPIPS when available) of the current model on a split."""
        with self.lock:
            return evaluate_split(
                self.method.model, self.scene.split(split_name), self.run_dir / "renders" / split_name if write_images else None
            )

    def finish(self) -> dict[str, Any]:
        """Evaluate on the test split (val if test is empty), write renders and ``metrics.json``."""
        split = "test" if len(self.scene.test) else "val"
        result = self.evaluate(split) if len(self.scene.split(split)) else {}
        metrics = {
            "method": self.config.method,
            "backend": self.backend,
            "device": str(self.device),
            "steps": self.step,
            "train_seconds": round(self.train_seconds, 2),
            "split": split,
            **{k: v for k, v in result.items() if k != "per_view"},
            **self.method.stats(),
            "per_view": result.get("per_view", []),
        }
        write_json(metrics, self.run_dir / "metrics.json")
        return metrics
