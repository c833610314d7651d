"""An action-conditioned world model: an autoregressive transformer over the discrete tokenizer's FSQ tokens.

A clip of ``T`` frames is ``K = 1 + (T - 1) / 4`` latent frames of ``h x w`` tokens. The
transformer reads them in order, latent frame by latent frame, and at every position of
latent frame ``k`` predicts the token at the same position of frame ``k + 1``:

* attention is **block-causal over time** (a token sees every token of its own latent frame
  and of all earlier ones, never a later one), with the zoo's grouped-query attention
  (:class:`render3d.nn.transformer.TransformerBlock`, ``F.scaled_dot_product_attention``);
* **camera conditioning**: every latent pixel of frame ``k`` gets the Plücker ray maps
  (:mod:`render3d.video.plucker`, relative to the first camera) of the four frames of latent
  frame ``k`` and of latent frame ``k + 1`` (the motion to predict), projected and added to
  its token embedding;
* **context noise** (GameNGen's fix for drift): in training, the FSQ digits of the context
  tokens (all latent frames after the first) are moved one level up or down with a random
  probability in ``[0, context_noise]``, and the model is told that probability; generation
  uses clean context, so the model has learnt to correct its own slightly wrong frames;
* **tokens as FSQ digits**: a token is embedded as the sum of one embedding per FSQ channel,
  and predicted by one softmax per channel (conditionally independent given the context),
  so the head costs ``sum(levels)`` outputs instead of ``prod(levels)`` (39 instead of
  64,000 for Cosmos' levels);
* **generation** feeds one latent frame at a time through a :class:`KVCache` per layer, so
  earlier frames are never recomputed; tokens are the argmax (``temperature=0``) or sampled.
  :meth:`WorldModel.generate` can also return each generated frame's **expected FSQ values**
  (per channel, the mean level under its softmax): decoded instead of the tokens, they give
  the tokenizer's decoder the model's mean prediction (blurrier where it is unsure, closer in
  PSNR), while the chosen tokens still feed the next step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.video.fsq import FSQ
from render3d.video.plucker import CHANNELS as PLUCKER_CHANNELS
from render3d.video.wavelet import FACTOR
from render3d.nn.transformer import KVCache, TransformerBlock

NOISE_BUCKETS = 8
ACTION_CHANNELS = 2 * FACTOR * PLUCKER_CHANNELS  # this latent frame's 4 ray maps and the next one's


#: Each model family's defaults for the options left unset. Tokens, 600 s at dim 128, held-out loss (nats/token) on
#: 1280 default-scene clips: 5.02 at dropout 0.1, 5.10 at 0.25. Latent diffusion, 300 s on the same clips, frames
#: 1-8 over copy-last-frame: +2.17 dB at lr 1e-3 / dropout 0.1, +2.91 at 2e-3 / 0.1, +3.27 at 2e-3 / 0.
FAMILY_DEFAULTS: dict[str, dict[str, float]] = {"tokens": {"lr": 1e-3, "dropout": 0.1}, "latent-diffusion": {"lr": 2e-3, "dropout": 0.0}}


@dataclass
class WorldModelConfig:
    """World-model options (CLI: ``render3d video train CLIPS --tokenizer TOK --NAME``)."""

    dim: int = option("transformer width", default=192)
    layers: int = option("transformer blocks", default=4)
    heads: int = option("query heads (must divide --dim)", default=6)
    kv_heads: int = option("key/value heads shared by the query heads (grouped-query attention)", default=2)
    dropout: Optional[float] = option("residual dropout in the transformer blocks, in training; default: the family's "
                                      "(tokens 0.1, latent diffusion 0)", default=None)
    context_noise: float = option("largest context corruption in training (GameNGen): the fraction of FSQ digits moved by one "
                                  "level (tokens), or of the noise steps (latent diffusion)", default=0.2)
    sample_steps: int = option("latent diffusion: DDIM denoising steps per generated latent frame", default=20)
    lr: Optional[float] = option("AdamW learning rate (after a linear warm-up); default: the family's (tokens 1e-3, "
                                 "latent diffusion 2e-3)", default=None)
    warmup: int = option("learning-rate warm-up steps", default=100)
    final_lr: float = option("the learning rate decays along a cosine to this fraction of --lr at the end of --steps or --budget", default=0.05)
    weight_decay: float = option("AdamW weight decay", default=0.01)
    grad_clip: float = option("clip the gradient norm to this value (0: off)", default=1.0)

    def for_family(self, family: str) -> "WorldModelConfig":
        """A copy with the options left unset (None) taken from :data:`FAMILY_DEFAULTS` of ``family``."""
        return replace(self, **{k: v for k, v in FAMILY_DEFAULTS[family].items() if getattr(self, k) is None})

    def validate(self) -> None:
        if self.dim < 8 or self.layers < 1 or self.heads < 1 or self.dim % self.heads or self.heads % self.kv_heads:
            raise Render3DError(f"--dim {self.dim} must divide into --heads {self.heads}, and the heads into --kv-heads {self.kv_heads}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise Render3DError(f"--dropout {self.dropout} must be in [0, 1)")
        if not 0 <= self.context_noise < 1:
            raise Render3DError(f"--context-noise {self.context_noise} must be in [0, 1)")
        if not 0 <= self.final_lr <= 1:
            raise Render3DError(f"--final-lr {self.final_lr} must be in [0, 1] (a fraction of --lr)")
        if self.sample_steps < 1:
            raise Render3DError(f"--sample-steps {self.sample_steps} must be at least 1")


@dataclass(frozen=True)
class TokenGrid:
    """What the tokens look like: FSQ levels, latent frames per clip, latent height and width."""

    levels: tuple[int, ...]
    frames: int
    height: int
    width: int

    @property
    def per_frame(self) -> int:
        return self.height * self.width


def group_actions(maps: Tensor) -> Tensor:
    """Per-frame ray maps ``[B, T, 6, h, w]`` -> per-latent-frame ``[B, K, 24, h, w]`` (grouped like the wavelet patcher)."""
    b, t, c, h, w = maps.shape
    padded = torch.cat([maps[:, :1].expand(-1, FACTOR - 1, -1, -1, -1), maps], dim=1)
    return padded.reshape(b, (t + FACTOR - 1) // FACTOR, FACTOR * c, h, w)


def frame_actions(grouped: Tensor) -> Tensor:
    """``[B, K, 24, h, w]`` -> ``[B, K, 48, h, w]``: each latent frame's own maps and the next one's (zeros after the last)."""
    nxt = torch.cat([grouped[:, 1:], torch.zeros_like(grouped[:, :1])], dim=1)
    return torch.cat([grouped, nxt], dim=2)


def block_causal_mask(frames: int, per_frame: int, device: torch.device | str = "cpu") -> Tensor:
    """``[L, L]`` boolean over ``frames`` latent frames of ``per_frame`` positions: i may attend to j
    when j's latent frame is not after i's."""
    frame = torch.arange(frames, device=device).repeat_interleave(per_frame)
    return frame[None, :] <= frame[:, None]


class CameraTransformer(nn.Module):
    """What both world models share: a block-causal transformer (the zoo's blocks) over latent
    frames of ``h x w`` positions, each position's input plus a learnt position and time
    embedding and its camera's Plücker rays (``action_channels`` per position, through an MLP),
    a head of ``out_features``, and the checkpoint format. Subclasses add their input embedding."""

    family = ""  # what it models: "tokens" or "latent-diffusion"

    def __init__(self, config: WorldModelConfig, grid: Any, action_channels: int, out_features: int) -> None:
        super().__init__()
        config = config.for_family(self.family)
        config.validate()
        self.config, self.grid = config, grid
        d = config.dim
        self.pos = nn.Parameter(torch.randn(grid.per_frame, d) * 0.02)
        self.time = nn.Parameter(torch.randn(grid.frames, d) * 0.02)
        self.action = nn.Sequential(nn.Linear(action_channels, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([TransformerBlock(d, config.heads, config.kv_heads, config.dropout) for _ in range(config.layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, out_features)
        self.info: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return self.pos.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _with_cameras(self, x: Tensor, actions: Tensor, start: int) -> Tensor:
        """Inputs ``x [B, k, h*w, dim]`` of latent frames ``start ..`` plus position, time and ``actions [B, k, A, h, w]``."""
        b, k, per = x.shape[:3]
        x = x + self.pos[None, None] + self.time[start:start + k][None, :, None]
        return x + self.action(actions.permute(0, 1, 3, 4, 2).reshape(b, k, per, -1))

    def _run(self, x: Tensor, mask: Optional[Tensor], caches: Optional[list[KVCache]] = None) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, mask, caches[i] if caches is not None else None)
        return self.head(self.norm(x))

    # ----- persistence -----------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        from render3d.video.checkpoint import VERSION

        grid = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.grid).items()}
        return {"version": VERSION, "kind": "video-world-model", "family": self.family, "config": asdict(self.config),
                "grid": grid, "state": self.state_dict(), "info": dict(self.info)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Any:
        model = cls(WorldModelConfig(**ckpt["config"]), cls.grid_from_dict(ckpt["grid"]))
        model.load_state_dict(ckpt["state"])
        model.info = dict(ckpt.get("info", {}))
        return model

    @staticmethod
    def grid_from_dict(grid: dict[str, Any]) -> Any:
        raise NotImplementedError


class WorldModel(CameraTransformer):
    """The transformer of the module docstring; ``tokens [B, K, h, w]``, ``actions [B, K, 24, h, w]``."""

    family = "tokens"

    def __init__(self, config: WorldModelConfig, grid: TokenGrid) -> None:
        super().__init__(config, grid, ACTION_CHANNELS, sum(grid.levels))
        self.fsq = FSQ(grid.levels)
        d = config.dim
        self.embed = nn.ModuleList([nn.Embedding(n, d) for n in grid.levels])
        self.noise_level = nn.Embedding(NOISE_BUCKETS + 1, d)  # the last id: the clean first frame

    @staticmethod
    def grid_from_dict(grid: dict[str, Any]) -> TokenGrid:
        return TokenGrid(tuple(grid["levels"]), int(grid["frames"]), int(grid["height"]), int(grid["width"]))

    # ----- the network -------------------------------------------------------------------------
    def _inputs(self, tokens: Tensor, actions: Tensor, start: int, noise: Tensor) -> Tensor:
        """Embeddings ``[B, k * h * w, dim]`` of latent frames ``start .. start + k - 1``.

        ``actions [B, k, 48, h, w]`` (see :func:`frame_actions`); ``noise [B, k]`` bucket ids.
        """
        b, k, h, w = tokens.shape
        digits = self.fsq.indices_to_digits(tokens.reshape(b, k, h * w))
        x = self._with_cameras(sum(embed(digits[..., i]) for i, embed in enumerate(self.embed)), actions, start)
        x = x + self.noise_level(noise)[:, :, None]
        return x.reshape(b, k * h * w, -1)

    def block_causal_mask(self, frames: int) -> Tensor:
        """``[L, L]`` boolean: position i may attend to j when j's latent frame is not after i's."""
        return block_causal_mask(frames, self.grid.per_frame, self.device)

    def digit_logits(self, logits: Tensor) -> list[Tensor]:
        """Split head outputs ``[..., sum(levels)]`` into one ``[..., levels[i]]`` per FSQ channel."""
        return list(logits.split(list(self.grid.levels), dim=-1))

    def most_likely(self, logits: Tensor) -> Tensor:
        """The token made of each channel's most likely level, ``[...]``."""
        return self.fsq.digits_to_indices(torch.stack([lg.argmax(-1) for lg in self.digit_logits(logits)], -1))

    def logits(self, tokens: Tensor, actions: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """Next-frame logits ``[B, K, h*w, sum(levels)]`` (frame k's row predicts frame k + 1)."""
        b, k = tokens.shape[:2]
        if k > self.grid.frames:
            raise Render3DError(f"{k} latent frames is more than the {self.grid.frames} this model was built for")
        if noise is None:
            noise = torch.zeros(b, k, dtype=torch.long, device=tokens.device)
            noise[:, 0] = NOISE_BUCKETS
        out = self._run(self._inputs(tokens, frame_actions(actions), 0, noise), self.block_causal_mask(k))
        return out.reshape(b, k, self.grid.per_frame, -1)

    # ----- training ------------------------------------------------------------------------------
    def perturb(self, tokens: Tensor, probability: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Move each FSQ digit of ``tokens [B, k, h, w]`` one level up or down with ``probability [B]`` (clamped)."""
        digits = self.fsq.indices_to_digits(tokens)  # [B, k, h, w, D]
        levels = torch.tensor(self.fsq.levels, device=tokens.device)
        shape = digits.shape
        move = torch.rand(shape, generator=generator).to(tokens.device) < probability.view(-1, 1, 1, 1, 1)
        sign = torch.where(torch.rand(shape, generator=generator).to(tokens.device) < 0.5, -1, 1)
        return self.fsq.digits_to_indices(torch.minimum((digits + move * sign).clamp(min=0), levels - 1))

    def loss(self, tokens: Tensor, actions: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of every latent frame after the first, with noisy context (see the module docstring)."""
        b, k = tokens.shape[:2]
        level = torch.rand(b, generator=generator).to(tokens.device) * self.config.context_noise
        noisy = tokens.clone()
        if self.config.context_noise > 0 and k > 2:
            noisy[:, 1:] = self.perturb(tokens[:, 1:], level, generator)
        bucket = (level / max(self.config.context_noise, 1e-9) * NOISE_BUCKETS).long().clamp(0, NOISE_BUCKETS - 1)
        noise = bucket[:, None].expand(b, k).clone()
        noise[:, 0] = NOISE_BUCKETS
        logits = self.logits(noisy, actions, noise)[:, :-1]
        target = tokens[:, 1:].reshape(b, k - 1, -1)
        accuracy = (self.most_likely(logits.detach()) == target).float().mean()
        return self.token_nll(logits, target), {"accuracy": float(accuracy)}

    def token_nll(self, logits: Tensor, target: Tensor) -> Tensor:
        """Negative log-likelihood of the target tokens, in nats per token (the sum over FSQ channels)."""
        digits = self.fsq.indices_to_digits(target)
        return sum(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), digits[..., i].reshape(-1))
                   for i, lg in enumerate(self.digit_logits(logits)))

    @torch.no_grad()
    def eval_loss(self, tokens: Tensor, actions: Tensor) -> float:
        """Next-frame negative log-likelihood (nats per token) with clean context."""
        logits = self.logits(tokens, actions)[:, :-1]
        return float(self.token_nll(logits, tokens[:, 1:].reshape(tokens.shape[0], tokens.shape[1] - 1, -1)))

    # ----- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, first: Tensor, actions: Tensor, temperature: float = 0.0,
                 generator: Optional[torch.Generator] = None, expected: bool = False) -> Tensor:
        """Tokens ``[B, K, h, w]`` continuing ``first [B, 1, h, w]`` along ``actions [B, K, 24, h, w]``.

        One latent frame per step through per-layer KV caches; argmax when ``temperature`` is 0.
        With ``expected``, FSQ values ``[B, D, K, h, w]`` instead: the first frame's own values,
        then each generated frame's expected values (:meth:`expected_values`); the chosen
        tokens still feed the next step.
        """
        b, k = first.shape[0], actions.shape[1]
        if k > self.grid.frames:
            raise Render3DError(f"{k} latent frames is more than the {self.grid.frames} this model was built for")
        acts = frame_actions(actions)
        caches = [KVCache() for _ in self.blocks]
        tokens = [first]
        values = [self.fsq.indices_to_values(first)]
        per, hw = self.grid.per_frame, (self.grid.height, self.grid.width)
        for i in range(k - 1):
            noise = torch.full((b, 1), NOISE_BUCKETS if i == 0 else 0, dtype=torch.long, device=first.device)
            x = self._inputs(tokens[-1], acts[:, i:i + 1], i, noise)
            mask = torch.ones(per, (i + 1) * per, dtype=torch.bool, device=first.device)
            logits = self._run(x, mask, caches)  # [B, h*w, sum(levels)]: the next latent frame
            tokens.append(self.sample(logits, temperature, generator).view(b, 1, *hw))
            if expected:
                values.append(self.expected_values(logits).movedim(-1, 1).reshape(b, -1, 1, *hw))
        return torch.cat(values, dim=2) if expected else torch.cat(tokens, dim=1)

    def expected_values(self, logits: Tensor) -> Tensor:
        """The mean FSQ value ``[..., D]`` of each channel under its softmax over levels (values as :meth:`FSQ.indices_to_values`)."""
        return torch.stack([F.softmax(lg.float(), dim=-1) @ self.fsq.level_values(i)
                            for i, lg in enumerate(self.digit_logits(logits))], -1)

    def sample(self, logits: Tensor, temperature: float, generator: Optional[torch.Generator] = None) -> Tensor:
        """Tokens ``[...]`` from logits ``[..., sum(levels)]``: each channel's argmax, or a sample at ``temperature``."""
        if temperature <= 0:
            return self.most_likely(logits)
        digits = []
        for lg in self.digit_logits(logits):
            probs = F.softmax(lg.float() / temperature, dim=-1).reshape(-1, lg.shape[-1]).cpu()
            digits.append(torch.multinomial(probs, 1, generator=generator).view(lg.shape[:-1]).to(lg.device))
        return self.fsq.digits_to_indices(torch.stack(digits, -1))
