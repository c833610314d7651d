"""An action-conditioned latent diffusion world model over the continuous tokenizer's latents.

The second world model of the video module, beside the token transformer of
:mod:`render3d.video.world_model` (same conditioning, same attention, same generation
interface). A clip's ``K`` latent frames of ``C x h x w`` floats (normalised per channel by
the training latents' mean and spread) are a sequence of ``K * h * w`` vectors:

* **diffusion forcing** (Chen et al. 2024): every latent frame carries its own noise level,
  told to the network; one block-causal transformer pass (the zoo's
  :class:`~render3d.nn.transformer.TransformerBlock`) denoises all of them at once, each
  seeing its own frame and the earlier ones only;
* **context noise** (GameNGen's fix for drift): in training, the frames before a random cut
  get one low noise level (up to ``context_noise`` of the T steps) and the frames from the
  cut on independent levels in ``0 .. T-1``, so the model learns both to use slightly wrong
  past frames and the generation regime (clean past, noisy present); frame 0 is the given,
  clean first frame and is never a target;
* **camera conditioning**: each latent pixel of frame ``k`` gets the Plücker ray maps of the
  four frames of latent frame ``k`` (relative to the first camera), as in the token model;
* the network predicts ``v`` (Salimans & Ho 2022) under a plain squared error, which weighs
  the noisiest steps (where the next frame is guessed from the past and the camera) more
  than Min-SNR-5 does (300 s pilot on the default scene: +0.7 dB over frames 1-8); the noise
  schedule and the DDIM update are the zoo's (:mod:`render3d.nn.schedule`);
* **generation** denoises one latent frame at a time from noise with ``sample_steps`` DDIM
  steps (deterministic given the seed), the frames made so far as clean context held in
  per-layer KV caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from render3d.errors import Render3DError
from render3d.video.plucker import CHANNELS as PLUCKER_CHANNELS
from render3d.video.wavelet import FACTOR
from render3d.video.world_model import CameraTransformer, WorldModelConfig, block_causal_mask
from render3d.nn import schedule
from render3d.nn.embeddings import sinusoidal_embedding
from render3d.nn.transformer import KVCache

TIMESTEPS = 1000
CLIP_X0 = 6.0  # clean estimates are clipped to this many standard deviations of the training latents
FRAME_ACTION_CHANNELS = FACTOR * PLUCKER_CHANNELS  # the four ray maps of a latent frame


@dataclass(frozen=True)
class LatentGrid:
    """What the latents look like: channels, latent frames per clip, latent height and width."""

    channels: int
    frames: int
    height: int
    width: int

    @property
    def per_frame(self) -> int:
        return self.height * self.width


class LatentDiffusionWorldModel(CameraTransformer):
    """The model of the module docstring; ``latents [B, K, C, h, w]`` (raw tokenizer latents), ``actions [B, K, 24, h, w]``."""

    family = "latent-diffusion"

    def __init__(self, config: WorldModelConfig, grid: LatentGrid) -> None:
        super().__init__(config, grid, FRAME_ACTION_CHANNELS, grid.channels)
        d = config.dim
        self.inp = nn.Linear(grid.channels, d)
        self.level = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod(schedule.linear_betas(TIMESTEPS)))
        self.register_buffer("latent_mean", torch.zeros(grid.channels))
        self.register_buffer("latent_std", torch.ones(grid.channels))

    @staticmethod
    def grid_from_dict(grid: dict[str, Any]) -> LatentGrid:
        return LatentGrid(int(grid["channels"]), int(grid["frames"]), int(grid["height"]), int(grid["width"]))

    # ----- latent normalisation ----------------------------------------------------------------
    def set_latent_statistics(self, latents: Tensor) -> None:
        """Per-channel mean and spread of training latents ``[N, K, C, h, w]`` (what the model normalises by)."""
        flat = latents.transpose(0, 2).reshape(self.grid.channels, -1).float()
        self.latent_mean.copy_(flat.mean(1))
        self.latent_std.copy_(flat.std(1).clamp_min(1e-4))

    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.latent_mean.view(-1, 1, 1)) / self.latent_std.view(-1, 1, 1)

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self.latent_std.view(-1, 1, 1) + self.latent_mean.view(-1, 1, 1)

    # ----- the network -------------------------------------------------------------------------
    def _embed(self, x: Tensor, actions: Tensor, levels: Tensor, start: int = 0) -> Tensor:
        """Input vectors ``[B, k * h * w, dim]`` of latent frames ``start .. start + k - 1`` (``x [B, k, C, h, w]``,
        their ``actions [B, k, 24, h, w]`` and noise steps ``levels [B, k]``)."""
        b, k, c, h, w = x.shape
        if start + k > self.grid.frames:
            raise Render3DError(f"{start + k} latent frames is more than the {self.grid.frames} this model was built for")
        per = h * w
        y = self._with_cameras(self.inp(x.permute(0, 1, 3, 4, 2).reshape(b, k, per, c)), actions, start)
        y = y + self.level(sinusoidal_embedding(levels.reshape(-1), self.config.dim)).view(b, k, 1, -1)
        return y.reshape(b, k * per, -1)

    def _unflatten(self, out: Tensor, k: int) -> Tensor:
        b, g = out.shape[0], self.grid
        return out.view(b, k, g.height, g.width, -1).permute(0, 1, 4, 2, 3)

    def predict_v(self, x: Tensor, actions: Tensor, levels: Tensor) -> Tensor:
        """``v [B, k, C, h, w]`` for noisy normalised latents ``x [B, k, C, h, w]`` at noise steps ``levels [B, k]``
        (``actions [B, >= k, 24, h, w]``), every latent frame seeing itself and the earlier ones."""
        k = x.shape[1]
        y = self._embed(x, actions[:, :k], levels)
        return self._unflatten(self._run(y, block_causal_mask(k, self.grid.per_frame, x.device)), k)

    def _abar(self, levels: Tensor) -> Tensor:
        return self.alphas_cumprod[levels][..., None, None, None]

    # ----- training ----------------------------------------------------------------------------
    def training_levels(self, b: int, k: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """Noise steps ``[B, K]``: 0 for the first frame, one low context level before a random cut, uniform from it on."""
        uniform = torch.randint(0, TIMESTEPS, (b, k), generator=generator)
        context = (torch.rand(b, 1, generator=generator) * self.config.context_noise * TIMESTEPS).long().expand(b, k)
        cut = torch.randint(1, k, (b, 1), generator=generator) if k > 1 else torch.ones(b, 1, dtype=torch.long)
        levels = torch.where(torch.arange(k)[None] < cut, context, uniform)
        levels[:, 0] = 0
        return levels.to(self.device)

    def loss(self, latents: Tensor, actions: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, float]]:
        """Mean squared ``v`` error of every latent frame after the first (see the module docstring)."""
        x0 = self.normalize(latents)
        b, k = x0.shape[:2]
        levels = self.training_levels(b, k, generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        abar = self._abar(levels)
        x = schedule.add_noise(x0, abar, noise)
        x[:, 0] = x0[:, 0]  # the given first frame is exactly clean
        v_target = abar.sqrt() * noise - (1 - abar).sqrt() * x0
        return (self.predict_v(x, actions, levels) - v_target)[:, 1:].pow(2).mean(), {}

    @torch.no_grad()
    def eval_loss(self, latents: Tensor, actions: Tensor, seed: int = 0) -> float:
        """The training loss with fixed noise (the same draws every call): comparable across checkpoints."""
        return float(self.loss(latents, actions, torch.Generator().manual_seed(seed))[0])

    # ----- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, first: Tensor, actions: Tensor, generator: Optional[torch.Generator] = None, cache: bool = True,
                 steps: Optional[int] = None) -> Tensor:
        """Raw latents ``[B, C, K, h, w]`` continuing ``first [B, C, 1, h, w]`` along ``actions [B, K, 24, h, w]``.

        ``steps`` DDIM steps per latent frame (default ``config.sample_steps``). One step from
        pure noise returns the network's clean estimate there, which the loss makes its best
        guess of the mean of the frame given the past and the camera: the **mean prediction**
        (blurrier where it is unsure, higher PSNR), the counterpart of the token model's
        expected FSQ values.

        With ``cache``, the clean frames made so far go through the network once, into per-layer
        KV caches, and each denoising step runs the new frame alone (the same result as running
        every frame again, which ``cache=False`` does).
        """
        b, k = first.shape[0], actions.shape[1]
        if k > self.grid.frames:
            raise Render3DError(f"{k} latent frames is more than the {self.grid.frames} this model was built for")
        frames = [self.normalize(first.transpose(1, 2)[:, 0])]  # each [B, C, h, w], normalised
        steps_t = schedule.respaced_steps(TIMESTEPS - 1, steps or self.config.sample_steps)
        caches = [KVCache() for _ in self.blocks]
        per, device = self.grid.per_frame, first.device
        clean = torch.zeros(b, 1, dtype=torch.long, device=device)
        for i in range(1, k):
            if cache:  # the frame finished last joins the caches, at noise step 0
                seen = torch.ones(per, i * per, dtype=torch.bool, device=device)
                self._run(self._embed(frames[-1][:, None], actions[:, i - 1:i], clean, i - 1), seen, caches)
            x = torch.randn(frames[0].shape, generator=generator).to(frames[0])
            for j, t in enumerate(steps_t):
                if cache:
                    y = self._embed(x[:, None], actions[:, i:i + 1], torch.full_like(clean, t), i)
                    mask = torch.ones(per, (i + 1) * per, dtype=torch.bool, device=device)
                    v = self._unflatten(self._run(y, mask, [fork(c) for c in caches]), 1)[:, 0]
                else:
                    levels = torch.zeros(b, i + 1, dtype=torch.long, device=device)
                    levels[:, i] = t
                    v = self.predict_v(torch.stack([*frames, x], 1), actions, levels)[:, i]
                abar = self.alphas_cumprod[t]
                abar_prev = self.alphas_cumprod[steps_t[j + 1]] if j + 1 < len(steps_t) else torch.ones((), device=device)
                x0 = (abar.sqrt() * x - (1 - abar).sqrt() * v).clamp(-CLIP_X0, CLIP_X0)
                x = schedule.ddim_update(x, x0, abar, abar_prev, 0.0, generator, last=j + 1 == len(steps_t))
            frames.append(x)
        return self.denormalize(torch.stack(frames, 1)).transpose(1, 2)


def fork(cache: KVCache) -> KVCache:
    """A cache holding the same keys and values whose extension leaves ``cache`` as it is."""
    copy = KVCache()
    copy.k, copy.v = cache.k, cache.v
    return copy


def world_model_from_checkpoint(ckpt: dict[str, Any]) -> Any:
    """The world model a checkpoint holds: the token transformer or the latent diffusion model."""
    from render3d.video.world_model import WorldModel

    family = ckpt.get("family", WorldModel.family)
    models = {WorldModel.family: WorldModel, LatentDiffusionWorldModel.family: LatentDiffusionWorldModel}
    if family not in models:
        raise Render3DError(f"unknown world-model family {family!r} in the checkpoint (this version knows {', '.join(models)})")
    return models[family].from_checkpoint(ckpt)
