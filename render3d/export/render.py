"""Render a sequence of cameras with any :class:`SceneModel` into frame sinks (video or PNGs).

Only ``model.render(cameras, mode)`` is used, so every method renders videos the same way.
Modes are ``rgb``, ``depth`` (Turbo colour map with a legend giving its range) and
``alpha``; they go side by side into one sink or into one sink each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from render3d.cameras import Cameras
from render3d.errors import Render3DError
from render3d.export.colormap import colorize, draw_legend, error_heatmap
from render3d.export.video import FrameSink
from render3d.images import depth_range as covered_depth_range
from render3d.images import recomposite, to_uint8
from render3d.protocol import RenderOutput, SceneModel

VIDEO_MODES = ("rgb", "depth", "alpha")


def parse_modes(text: str) -> list[str]:
    """``"rgb,depth"`` -> ``["rgb", "depth"]``, with a one-line error for unknown modes."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in VIDEO_MODES]
    if not modes or bad:
        raise Render3DError(f"unknown render mode {', '.join(bad) or text!r}: use a comma-separated list of {', '.join(VIDEO_MODES)}")
    return modes


def estimate_depth_range(model: SceneModel, cameras: Cameras, samples: int = 5, scale: float = 0.25) -> tuple[float, float]:
    """A depth range (2nd-98th percentile of covered pixels) from a few low-resolution renders."""
    picks = torch.linspace(0, len(cameras) - 1, min(samples, len(cameras))).round().long().unique().tolist()
    outs = [model.render(cameras[i].scaled(scale), mode="depth") for i in picks]
    depth = torch.cat([o.depth.reshape(-1).cpu() for o in outs])
    alpha = torch.cat([o.alpha.reshape(-1).cpu() for o in outs])
    return covered_depth_range(depth, alpha)


@dataclass
class FramePainter:
    """Turns one camera's :class:`RenderOutput` into uint8 images per mode."""

    model: SceneModel
    modes: Sequence[str]
    depth_range: tuple[float, float] = (0.0, 1.0)
    background: Optional[Tensor] = None

    def paint(self, out: RenderOutput) -> dict[str, np.ndarray]:
        images: dict[str, np.ndarray] = {}
        for mode in self.modes:
            if mode == "rgb":
                images[mode] = to_uint8(recomposite(out.rgb, out.alpha, self.model.background, self.background)[0])
            elif mode == "depth":
                lo, hi = self.depth_range
                depth = colorize(out.depth[0].cpu(), lo, hi, valid=(out.alpha[0].cpu() > 0.5))
                images[mode] = draw_legend(to_uint8(depth), lo, hi)
            elif mode == "alpha":
                images[mode] = to_uint8(out.alpha[0].expand(-1, -1, 3))
        return images


def render_frames(
    model: SceneModel,
    cameras: Cameras,
    sinks: Mapping[str, FrameSink],
    modes: Sequence[str],
    side_by_side: bool = True,
    background: Optional[Tensor] = None,
    depth_range: Optional[tuple[float, float]] = None,
    targets: Optional[Callable[[int], Tensor]] = None,
    error_sink: Optional[FrameSink] = None,
    progress: bool = True,
) -> int:
    """Render every camera and stream its images to ``sinks``.

    Args:
        sinks: ``{"all": sink}`` when ``side_by_side``, else one sink per mode.
        depth_range: the colour-map range for depth; estimated from a few frames when None.
        targets: ground-truth image ``[H, W, 3]`` of frame ``i``, for ``error_sink`` heat maps.

    Returns:
        the number of frames written.
    """
    if "depth" in modes and depth_range is None:
        depth_range = estimate_depth_range(model, cameras)
    painter = FramePainter(model, modes, depth_range or (0.0, 1.0), background)
    bar = tqdm(range(len(cameras)), disable=not progress, desc="render", unit="frame", dynamic_ncols=True)
    for i in bar:
        out = model.render(cameras[i], mode=modes[0])
        images = painter.paint(out)
        if side_by_side:
            sinks["all"].write(np.concatenate([images[m] for m in modes], axis=1))
        else:
            for mode in modes:
                sinks[mode].write(images[mode])
        if targets is not None and error_sink is not None:
            error_sink.write(to_uint8(error_heatmap(out.rgb[0], targets(i))))
    bar.close()
    return len(cameras)

