"""Writing generated clips: an MP4 (or a folder of PNGs), optionally beside a reference render."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from torch import Tensor

from render3d.export.video import PngFolder, VideoWriter
from render3d.images import to_uint8

SEPARATOR = 2  # white pixels between side-by-side clips (before upscaling)


def clip_frames(video: Tensor, scale: int = 1, reference: Optional[Tensor] = None) -> list[np.ndarray]:
    """uint8 frames ``[H, W', 3]`` of ``video [T, 3, H, W]``, beside ``reference`` when given, upscaled by ``scale``."""
    frames = []
    for i in range(len(video)):
        parts = [to_uint8(video[i].permute(1, 2, 0))]
        if reference is not None:
            h = parts[0].shape[0]
            parts += [np.full((h, SEPARATOR, 3), 255, np.uint8), to_uint8(reference[i].permute(1, 2, 0))]
        frame = np.concatenate(parts, axis=1)
        frames.append(frame.repeat(scale, 0).repeat(scale, 1) if scale > 1 else frame)
    return frames


def write_clip(video: Tensor, out: str | Path, fps: float, scale: int = 4, reference: Optional[Tensor] = None) -> Path:
    """Write ``video`` to ``out`` (``.mp4``: H.264; anything else: a folder of PNGs), atomically."""
    out = Path(out)
    sink = VideoWriter(out, fps) if out.suffix.lower() == ".mp4" else PngFolder(out)
    with sink:
        for frame in clip_frames(video.detach().cpu().float(), max(1, int(scale)), reference):
            sink.write(frame)
    return out

