"""Turn a :class:`RenderOutput` into the picture a browser shows: rgb on a chosen
background, colour-mapped depth with its range, alpha, or normals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from render3d.export.colormap import colorize, turbo
from render3d.images import depth_range, recomposite, to_uint8
from render3d.protocol import HasNormals, RenderOutput, SceneModel

VIEW_MODES = ("rgb", "depth", "alpha", "normal")


def colorbar(width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal uint8 legend image of the depth colours, near (left) to far (right)."""
    ramp = torch.linspace(0, 1, width)[None].expand(height, width)
    return (turbo(ramp) * 255 + 0.5).to(torch.uint8).numpy()


@dataclass
class Frame:
    """A picture ready to send: ``image`` uint8 ``[H, W, 3]``; ``depth_range`` when mode is depth."""

    image: np.ndarray
    depth_range: Optional[tuple[float, float]] = None


def available_modes(model: SceneModel) -> tuple[str, ...]:
    """The view modes ``model`` can show: rgb, depth, alpha, and normal for :class:`~render3d.protocol.HasNormals` models."""
    return VIEW_MODES if isinstance(model, HasNormals) else VIEW_MODES[:3]


def visualize(
    out: RenderOutput,
    mode: str,
    background: Optional[Tensor] = None,
    model_bg: Optional[Tensor] = None,
    fixed_range: Optional[tuple[float, float]] = None,
) -> Frame:
    """The first camera of ``out`` as a :class:`Frame`.

    Args:
        out: a render of at least one camera.
        mode: one of :data:`VIEW_MODES`.
        background: ``[3]`` colour to show behind the scene (rgb, depth, normal modes);
            None keeps the model's own.
        model_bg: the background ``out.rgb`` was composited on (needed to swap it).
        fixed_range: depth near / far; None picks it from the image.
    """
    alpha = out.alpha[0].detach().float().cpu()
    rgb = out.rgb[0].detach().float().cpu()
    bg = None if background is None else background.float().cpu().reshape(1, 1, 3)
    if mode == "rgb":
        if bg is not None:
            rgb = recomposite(rgb, alpha, model_bg if model_bg is not None else torch.ones(3), bg)
        return Frame(to_uint8(rgb))
    if mode == "alpha":
        return Frame(to_uint8(alpha.expand(*alpha.shape[:2], 3)))
    if mode == "depth":
        depth = out.depth[0].detach().float().cpu()
        lo, hi = fixed_range if fixed_range is not None else depth_range(depth, alpha)
        colors = colorize(depth, lo, hi)
        shown = colors * alpha + (1 - alpha) * (bg if bg is not None else torch.zeros(1, 1, 3))
        return Frame(to_uint8(shown), (float(lo), float(hi)))
    if mode == "normal":
        if "normal" not in out.extras:
            raise ValueError("this model's renders carry no normals")
        normal = out.extras["normal"][0].detach().float().cpu()
        shown = (normal * 0.5 + 0.5) * alpha + (1 - alpha) * (bg if bg is not None else torch.zeros(1, 1, 3))
        return Frame(to_uint8(shown))
    raise ValueError(f"unknown view mode {mode!r}: use one of {', '.join(VIEW_MODES)}")
