"""Training the tokenizer and the world model on the shared loop (:class:`render3d.training.TrainLoop`).

Both trainers get the loop's progress bar, step and time budgets, periodic checkpoints,
Ctrl-C / SIGTERM / SIGHUP (checkpoint at a step boundary, exit 130 / 143 / 129) and exact
resume. A run folder holds ``model.pt`` (model, optimiser, step, random states, history),
``config.json``, and after training ``history.json`` and ``metrics.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.files import write_json
from render3d.training import Callback, TrainLoop, backward_and_step
from render3d.training import distributed as dist
from render3d.training.random_stream import RandomStream
from render3d.training.run_dir import default_run_path, run_dir_for
from render3d.video.checkpoint import CHECKPOINT_NAME, checkpoint_file, read_checkpoint
from render3d.video.clips import ClipSet, load_clips, require_posed
from render3d.video.latent_diffusion import LatentDiffusionWorldModel, LatentGrid
from render3d.video.tokenizer import TokenizerConfig, VideoTokenizer, latent_frames, load_tokenizer
from render3d.video.world_model import TokenGrid, WorldModel, WorldModelConfig


@dataclass
class VideoTrainConfig:
    """Training options shared by the tokenizer and the world model."""

    steps: int = option("training steps (batches)", default=2000, resumable=True)
    budget: float = option("stop after this many seconds of training (0: no limit); steps still cap it", default=0.0, resumable=True)
    batch_size: int = option("clips per batch", default=8)
    out: Optional[str] = option("run folder; runs/video-<part>-<time> when omitted", default=None)
    seed: int = option("random seed; the same seed gives the same run", default=0)
    save_every: int = option("write the checkpoint every N steps (and at the end and on Ctrl-C)", default=250, resumable=True)
    eval_every: int = option("held-out evaluation every N steps (0: only at the end)", default=0, resumable=True)
    log_every: int = option("record the loss in history.json every N steps", default=10, resumable=True)
    threads: int = option("torch CPU threads (0: torch's default)", default=0, resumable=True)
    device: str = option("cpu, cuda or auto", default="auto", resumable=True)
    progress: bool = option("show a progress bar", default=True, resumable=True)
    overwrite: bool = option("train into an --out folder that already holds a video model, replacing it", default=False)


@dataclass
class TokenizerTrainConfig(VideoTrainConfig):
    """The shared training options with the tokenizer's own default batch."""

    # 4 clips, not 8: at the same time budget, twice the steps (+0.6 dB after 240 s on the default scene; 2 clips: +0.06 more)
    batch_size: int = option("clips per batch", default=4)


@dataclass
class TokenizerTrainOptions:
    """Tokenizer-only training options."""

    window: int = option("frames per training clip, 1 + 4k (random windows of the clips; 0: whole clips)", default=9)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise Render3DError("--device cuda: no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise Render3DError(f"--device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


class VideoTrainer(TrainLoop):
    """What both video trainers share: the run folder, random streams, optimiser, checkpoints and resume."""

    part: str = ""

    def __init__(self, clips: ClipSet, config: VideoTrainConfig, callbacks: Optional[list[Callback]] = None,
                 resuming: bool = False) -> None:
        if config.steps < 1 or config.batch_size < 1 or not config.budget >= 0:
            raise Render3DError("--steps and --batch-size must be at least 1 and --budget at least 0")
        super().__init__(budget_seconds=config.budget, save_every=config.save_every, eval_every=config.eval_every,
                         log_every=config.log_every, progress=config.progress, callbacks=callbacks,
                         threads=config.threads)
        self.config = config
        self.clips = clips
        self.device = resolve_device(config.device)
        self.total_steps = config.steps
        default = default_run_path("video", self.part)
        self.run_dir = run_dir_for(config.out, default, CHECKPOINT_NAME, resuming=resuming, overwrite=config.overwrite,
                                   what="video model")
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.random = RandomStream(config.seed, self.device)  # subclasses build their model in it
        self.optimizer: torch.optim.Optimizer

    # ----- what subclasses provide -----------------------------------------------------------------
    def model_checkpoint(self) -> dict[str, Any]:
        raise NotImplementedError

    def run_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any]:
        raise NotImplementedError

    def my_share(self, count: int) -> Tensor:
        """This rank's ``batch_size`` indices of a global batch drawn from ``range(count)`` identically on every rank."""
        b = self.config.batch_size
        index = torch.randint(0, count, (b * dist.world_size(),), generator=self.sampler)
        return index[dist.rank() * b:(dist.rank() + 1) * b]

    def synced_parameters(self) -> list:
        return list(self.model.parameters())  # type: ignore[attr-defined]

    # ----- checkpoints -------------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        ckpt = self.model_checkpoint()
        ckpt["optimizer"] = self.optimizer.state_dict()
        ckpt["trainer"] = {"step": self.step, "train_seconds": round(self.train_seconds, 3), "sampler": self.sampler.get_state(),
                           "rng": self.random.state_dict(), "history": self.history, "train_config": asdict(self.config),
                           "clips": str(self.clips.root) if self.clips.root else None}
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint's optimiser, step, random streams and history."""
        state = ckpt["trainer"]
        if ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.sampler.set_state(state["sampler"])
        self.random.load_state_dict(state["rng"])
        self.history = list(state["history"])

    # ----- the loop's hooks ------------------------------------------------------------------------------
    def begin(self) -> None:
        super().begin()
        write_json({"part": self.part, "train": asdict(self.config), **self.run_config(), "clips": self.clips.summary(),
                    "world_size": dist.world_size()}, self.run_dir / "config.json")

    def optimize(self, loss: torch.Tensor, grad_clip: float, lr: float) -> None:
        """One optimiser step on ``loss`` at learning rate ``lr``."""
        self.check_finite(float(loss.detach()))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss, [self.optimizer], grad_clip)
        self.step += 1

    def periodic_eval(self) -> Optional[dict[str, Any]]:
        return self.evaluate()

    def finish(self) -> dict[str, Any]:
        write_json(self.history, self.run_dir / "history.json")
        metrics = {"part": self.part, "steps": self.step, "train_seconds": round(self.train_seconds, 2),
                   "frames_per_second": round(self.frames_seen() / max(self.train_seconds, 1e-9), 2),
                   **self.evaluate(), "clips": self.clips.summary()}
        write_json(metrics, self.run_dir / "metrics.json")
        return metrics

    def frames_seen(self) -> int:
        """Training frames processed so far (for frames/s)."""
        raise NotImplementedError


# ----- the tokenizer -------------------------------------------------------------------------------------
class TokenizerTrainer(VideoTrainer):
    """Trains a :class:`VideoTokenizer` on random windows of the training clips (reconstruction loss)."""

    part = "tokenizer"
    desc = "video tokenizer"

    def __init__(self, clips: ClipSet, config: VideoTrainConfig, model_config: TokenizerConfig,
                 options: TokenizerTrainOptions = TokenizerTrainOptions(), callbacks: Optional[list[Callback]] = None,
                 resuming: bool = False) -> None:
        super().__init__(clips, config, callbacks, resuming)
        self.options = options
        self.window = options.window or clips.frames
        latent_frames(self.window)
        if self.window > clips.frames:
            raise Render3DError(f"--window {self.window} is longer than the clips ({clips.frames} frames)")
        with self.random.active():
            self.model = VideoTokenizer(model_config).to(self.device)
        self.model.latent_shape(self.window, clips.size[1], clips.size[0])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=model_config.lr)

    @classmethod
    def resume(cls, path: str | Path, clips: Optional[ClipSet] = None, **overrides: Any) -> "TokenizerTrainer":
        ckpt, clips, config = _resume_state(path, "video-tokenizer", clips, overrides)
        trainer = cls(clips, config, TokenizerConfig(**ckpt["config"]), TokenizerTrainOptions(**ckpt["info"]["options"]), resuming=True)
        trainer.model.load_state_dict(ckpt["state"])
        trainer.restore(ckpt)
        return trainer

    def model_checkpoint(self) -> dict[str, Any]:
        self.model.info = {"options": asdict(self.options), "clips": self.clips.summary(), "clips_meta": self.clips.meta,
                           "steps": self.step, "train_seconds": round(self.train_seconds, 2)}
        return self.model.checkpoint()

    def run_config(self) -> dict[str, Any]:
        return {"tokenizer": asdict(self.model.config), "options": asdict(self.options), "parameters": self.model.num_parameters()}

    def frames_seen(self) -> int:
        return self.step * self.config.batch_size * dist.world_size() * self.window

    def train_one_step(self) -> dict[str, float]:
        index = self.my_share(len(self.clips.train))
        start = int(torch.randint(0, self.clips.frames - self.window + 1, (1,), generator=self.sampler))
        video = self.clips.train.video(index, slice(start, start + self.window)).to(self.device)
        cfg = self.model.config
        self.model.train()
        loss, stats = self.model.loss(video)
        self.optimize(loss, cfg.grad_clip, warmup_cosine_lr(cfg.lr, 0, cfg.final_lr, self.step, self.fraction_done))
        return {"loss": float(loss.detach()), **stats}

    def evaluate(self) -> dict[str, Any]:
        from render3d.video.evaluate import reconstruction_metrics

        self.model.eval()
        return reconstruction_metrics(self.model, self.clips.test, self.device)


def _clips_path(state: dict[str, Any], path: str | Path) -> str:
    if not state.get("clips"):
        raise Render3DError(f"{path} does not say which clips it was trained on: pass them again")
    return str(state["clips"])


def warmup_cosine_lr(lr: float, warmup: int, final: float, step: int, fraction_done: float) -> float:
    """A linear warm-up over ``warmup`` steps, then a cosine from ``lr`` to ``final * lr`` at the end of training.

    ``fraction_done`` is :attr:`TrainLoop.fraction_done` (of the step count or the time budget).
    """
    cosine = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, fraction_done))))
    return lr * min(1.0, (step + 1) / max(1, warmup)) * cosine


def _resume_state(path: str | Path, kind: str, clips: Optional[ClipSet], overrides: dict[str, Any]) -> tuple[dict, ClipSet, "VideoTrainConfig"]:
    """A run's checkpoint of ``kind``, its clips (unless given) and its training options with ``overrides``."""
    ckpt = read_checkpoint(path, kind)
    if "trainer" not in ckpt:
        raise Render3DError(f"{path} holds no training state: it can be used but not resumed")
    state = ckpt["trainer"]
    clips = clips or load_clips(_clips_path(state, path))
    return ckpt, clips, VideoTrainConfig(**{**state["train_config"], "out": str(checkpoint_file(path).parent), **overrides})


# ----- the world model ------------------------------------------------------------------------------------
@dataclass
class TokenizedClips:
    """A split as the world model's inputs: tokens ``[N, K, h, w]`` (discrete tokenizer) or latents
    ``[N, K, C, h, w]`` (continuous), and grouped Plücker maps ``[N, K, 24, h, w]``."""

    codes: torch.Tensor
    actions: torch.Tensor


@torch.no_grad()
def tokenize_split(tokenizer: VideoTokenizer, split: Any, pose_scale: float, device: torch.device, batch: int = 8) -> TokenizedClips:
    """Encode every clip of a posed split (tokens, or latents of a continuous tokenizer) and compute its camera conditioning."""
    from render3d.video.plucker import plucker_maps
    from render3d.video.world_model import group_actions

    def encode(video: Tensor) -> Tensor:
        return tokenizer.tokens(video) if tokenizer.discrete else tokenizer.encode(video).transpose(1, 2)

    codes = torch.cat([encode(split.video(slice(i, i + batch)).to(device)).cpu() for i in range(0, len(split), batch)])
    h, w = codes.shape[-2:]
    size = (int(split.frames.shape[3]), int(split.frames.shape[2]))
    maps = torch.stack([plucker_maps(split.K[i], split.c2w[i], size, (w, h), pose_scale) for i in range(len(split))])
    return TokenizedClips(codes, group_actions(maps))


class WorldModelTrainer(VideoTrainer):
    """Trains a world model on posed clips encoded once by a frozen tokenizer: the token transformer
    (:class:`WorldModel`) on a discrete tokenizer's tokens, the latent diffusion model
    (:class:`LatentDiffusionWorldModel`) on a continuous one's latents."""

    part = "world-model"
    desc = "video world model"

    def __init__(self, clips: ClipSet, config: VideoTrainConfig, model_config: WorldModelConfig, tokenizer: str | Path,
                 callbacks: Optional[list[Callback]] = None, resuming: bool = False) -> None:
        super().__init__(clips, config, callbacks, resuming)
        require_posed(clips, "training a world model")
        with self.random.active():
            self._build(clips, model_config, tokenizer)

    def _build(self, clips: ClipSet, model_config: WorldModelConfig, tokenizer: str | Path) -> None:
        """Load the tokenizer, tokenize the clips, build the model and its optimiser (in the run's random stream)."""
        self.tokenizer_path = str(tokenizer)
        self.tokenizer_ckpt = read_checkpoint(tokenizer, "video-tokenizer")
        self.tokenizer = load_tokenizer(self.tokenizer_ckpt).to(self.device)
        c, k, h, w = self.tokenizer.latent_shape(clips.frames, clips.size[1], clips.size[0])
        self.train_codes = tokenize_split(self.tokenizer, clips.train, clips.pose_scale, self.device)
        self.test_codes = tokenize_split(self.tokenizer, clips.test, clips.pose_scale, self.device)
        self.model: WorldModel | LatentDiffusionWorldModel
        if self.tokenizer.discrete:
            self.model = WorldModel(model_config, TokenGrid(tuple(self.tokenizer.fsq.levels), k, h, w)).to(self.device)  # type: ignore[union-attr]
        else:
            self.model = LatentDiffusionWorldModel(model_config, LatentGrid(c, k, h, w)).to(self.device)
            self.model.set_latent_statistics(self.train_codes.codes.to(self.device))
        cfg = self.model.config  # with the family's defaults filled in
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    @classmethod
    def resume(cls, path: str | Path, clips: Optional[ClipSet] = None, **overrides: Any) -> "WorldModelTrainer":
        ckpt, clips, config = _resume_state(path, "video-world-model", clips, overrides)
        tok_file = checkpoint_file(path).parent / "tokenizer.pt"
        trainer = cls(clips, config, WorldModelConfig(**ckpt["config"]), tok_file, resuming=True)
        trainer.model.load_state_dict(ckpt["state"])
        trainer.restore(ckpt)
        return trainer

    def begin(self) -> None:
        super().begin()
        from render3d.checkpoints import save_weights

        tok_file = self.run_dir / "tokenizer.pt"
        if not tok_file.is_file():  # the run folder carries its tokenizer: it works on its own
            save_weights({**self.tokenizer_ckpt, "optimizer": None, "trainer": None}, tok_file)

    def model_checkpoint(self) -> dict[str, Any]:
        meta = self.clips.meta
        self.model.info = {"clips": self.clips.summary(), "tokenizer": self.tokenizer_path, "steps": self.step,
                           "train_seconds": round(self.train_seconds, 2), "pose_scale": self.clips.pose_scale,
                           "fps": meta.get("fps"), "scene_frame": meta.get("scene_frame"), "source": meta.get("source"),
                           "frames": self.clips.frames, "width": self.clips.size[0], "height": self.clips.size[1]}
        ckpt = self.model.checkpoint()
        ckpt["tokenizer"] = {k: v for k, v in self.tokenizer_ckpt.items() if k not in ("optimizer", "trainer")}
        return ckpt

    def run_config(self) -> dict[str, Any]:
        return {"world_model": asdict(self.model.config), "family": self.model.family, "grid": asdict(self.model.grid), "tokenizer": self.tokenizer_path,
                "parameters": self.model.num_parameters()}

    def frames_seen(self) -> int:
        return self.step * self.config.batch_size * dist.world_size() * self.clips.frames

    def train_one_step(self) -> dict[str, float]:
        index = self.my_share(len(self.train_codes.codes))
        codes = self.train_codes.codes[index].to(self.device)
        actions = self.train_codes.actions[index].to(self.device)
        cfg = self.model.config
        self.model.train()
        loss, stats = self.model.loss(codes, actions, self.sampler)
        self.optimize(loss, cfg.grad_clip, warmup_cosine_lr(cfg.lr, cfg.warmup, cfg.final_lr, self.step, self.fraction_done))
        return {"loss": float(loss.detach()), **stats}

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        self.model.eval()
        losses = []
        for i in range(0, len(self.test_codes.codes), 16):
            t = self.test_codes.codes[i:i + 16].to(self.device)
            a = self.test_codes.actions[i:i + 16].to(self.device)
            losses.append(self.model.eval_loss(t, a) * len(t))
        return {"held_out_loss": round(sum(losses) / len(self.test_codes.codes), 4), "family": self.model.family,
                "parameters": self.model.num_parameters()}

