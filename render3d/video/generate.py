"""Generating clips: a first frame and a camera path in, frames out (tokenizer + world model).

The world model is the token transformer (:mod:`render3d.video.world_model`, over a discrete
tokenizer's tokens) or the latent diffusion model (:mod:`render3d.video.latent_diffusion`,
over a continuous tokenizer's latents); both are driven the same way.

A trained world-model run folder holds both parts (``model.pt`` embeds its tokenizer), so
:func:`load_video_model` needs nothing else. Clips longer than the model's training clips
are made in chunks: each chunk starts from the last frame generated so far, with the camera
motion taken relative to that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.camera_paths.framing import SceneFrame
from render3d.errors import Render3DError
from render3d.video.checkpoint import read_checkpoint
from render3d.video.latent_diffusion import LatentDiffusionWorldModel, world_model_from_checkpoint
from render3d.video.plucker import plucker_maps
from render3d.video.tokenizer import VideoTokenizer, frames_of, load_tokenizer
from render3d.video.wavelet import FACTOR
from render3d.video.world_model import WorldModel, group_actions

DECODE_MODES = ("tokens", "mean")


@dataclass
class VideoModel:
    """A tokenizer and the world model trained on its tokens or latents, with what they were trained on."""

    tokenizer: VideoTokenizer
    world: WorldModel | LatentDiffusionWorldModel
    source: Optional[Path] = None
    decode: str = "tokens"  # or "mean": the model's mean prediction (expected FSQ values; one denoising step for latent diffusion)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise Render3DError(f"decode must be one of {', '.join(DECODE_MODES)}, not {self.decode!r}")

    @property
    def info(self) -> dict[str, Any]:
        return self.world.info

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames it makes."""
        return int(self.info["width"]), int(self.info["height"])

    @property
    def fps(self) -> float:
        return float(self.info.get("fps") or 8.0)

    @property
    def pose_scale(self) -> float:
        return float(self.info.get("pose_scale") or 1.0)

    @property
    def scene_frame(self) -> Optional[SceneFrame]:
        """Where the training clips' cameras were (for orbits around an image), if known."""
        from render3d.video.sources import scene_frame_from_meta

        return scene_frame_from_meta(self.info) if self.info.get("scene_frame") else None

    @property
    def chunk_frames(self) -> int:
        """Frames one pass of the world model makes (its training clip length)."""
        return frames_of(self.world.grid.frames)

    @property
    def device(self) -> torch.device:
        return self.world.device

    def to(self, device: torch.device | str) -> "VideoModel":
        self.tokenizer.to(device)
        self.world.to(device)
        return self

    def actions(self, K: Tensor, c2w: Tensor) -> Tensor:
        """Grouped Plücker maps ``[B, k, 24, h, w]`` of cameras ``K [B, T, 3, 3]``, ``c2w [B, T, 4, 4]`` (T = 1 + 4(k-1))."""
        g = self.world.grid
        maps = torch.stack([plucker_maps(K[i], c2w[i], self.size, (g.width, g.height), self.pose_scale) for i in range(len(K))])
        return group_actions(maps)

    @torch.no_grad()
    def _chunk(self, first: Tensor, K: Tensor, c2w: Tensor, temperature: float, generator: Optional[torch.Generator]) -> Tensor:
        if isinstance(self.world, LatentDiffusionWorldModel):  # temperature: the token model's; diffusion samples by its seed
            latents = self.world.generate(self.tokenizer.encode(first[:, None].to(self.device)), self.actions(K, c2w).to(self.device),
                                          generator, steps=1 if self.decode == "mean" else None)
            return self.tokenizer.decode(latents).clamp(0, 1).cpu()
        first_tokens = self.tokenizer.tokens(first[:, None].to(self.device))  # [B, 1, h, w]
        actions = self.actions(K, c2w).to(self.device)
        if self.decode == "mean":
            values = self.world.generate(first_tokens, actions, temperature, generator, expected=True)
            return self.tokenizer.decode(values).clamp(0, 1).cpu()
        tokens = self.world.generate(first_tokens, actions, temperature, generator)
        return self.tokenizer.decode_tokens(tokens).cpu()

    @torch.no_grad()
    def generate(self, first: Tensor, K: Tensor, c2w: Tensor, temperature: float = 0.0,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` from first frames ``[B, 3, H, W]`` along cameras ``[B, T, ...]``.

        Frame 0 of the output is the tokenizer's reconstruction of ``first``.
        """
        b, t = c2w.shape[:2]
        if tuple(first.shape[-2:]) != (self.size[1], self.size[0]):
            raise Render3DError(f"the first frame is {first.shape[-1]}x{first.shape[-2]} but the model makes {self.size[0]}x{self.size[1]} frames")
        self.tokenizer.eval(), self.world.eval()
        chunk = self.chunk_frames
        out = [first[:, None].cpu()]
        start = 0
        current = first
        while start < t - 1:
            n = min(chunk, t - start)
            n_padded = 1 + FACTOR * -(-(n - 1) // FACTOR)  # round up to 1 + 4k frames
            idx = torch.arange(start, start + n_padded).clamp(max=t - 1)  # repeat the last camera as padding
            frames = self._chunk(current, K[:, idx], c2w[:, idx], temperature, generator)
            out.append(frames[:, 1:n])
            current = frames[:, n - 1]
            start += n - 1
        video = torch.cat(out, dim=1)
        video[:, 0] = self.tokenizer.reconstruct(first.to(self.device)).cpu()
        return video


def load_video_model(path: str | Path, decode: str = "tokens") -> VideoModel:
    """A world-model run folder (or its ``model.pt``) with its embedded tokenizer, in eval mode.

    ``decode``: ``tokens`` decodes the generated tokens; ``mean`` their expected FSQ values.
    """
    ckpt = read_checkpoint(path, "video-world-model")
    if "tokenizer" not in ckpt or "grid" not in ckpt:
        raise Render3DError(f"{path} has no tokenizer inside: it is incomplete; retrain with `render3d video train`")
    world = world_model_from_checkpoint(ckpt).eval()
    tokenizer = load_tokenizer(ckpt["tokenizer"])
    return VideoModel(tokenizer, world, Path(path), decode)
