"""Turn a :class:`RenderOutput` into the picture a browser shows: rgb on a chosen
background, colour-mapped depth with its range, alpha, or normals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from render3d.export.colormap import colorize, turbo
from render3d.protocol import RenderOutput, SceneModel

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


def model_background(model: SceneModel) -> Tensor:
    """The colour a model composites on (its ``background`` attribute; white when it has none)."""
    bg = getattr(model, "background", None)
    return bg.detach().float().cpu().reshape(3) if isinstance(bg, Tensor) else torch.ones(3)


def available_modes(model: SceneModel) -> tuple[str, ...]:
    """The view modes ``model`` can show: rgb, depth, alpha, and normal when its renders carry normals."""
    from render3d.cameras import Cameras, intrinsics_matrix

    probe = Cameras(intrinsics_matrix(4.0, 4.0, 2.0, 2.0), torch.eye(4), 4, 4)
    out = model.render(probe, mode="normal")
    return VIEW_MODES if "normal" in out.extras else VIEW_MODES[:3]


def depth_range(depth: Tensor, alpha: Tensor) -> tuple[float, float]:
    """Near / far for colour mapping: the 2nd and 98th percentiles of covered pixels' depth."""
    valid = depth[(alpha > 0.5) & (depth > 0)]
    if valid.numel() == 0:
        return 0.0, 1.0
    if valid.numel() > 65536:
        valid = valid[torch.randint(valid.numel(), (65536,), generator=torch.Generator().manual_seed(0))]
    lo, hi = torch.quantile(valid.float(), torch.tensor([0.02, 0.98])).tolist()
    return lo, max(hi, lo + 1e-6)


def to_uint8(image: Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


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
            old = (model_bg if model_bg is not None else torch.ones(3)).float().cpu().reshape(1, 1, 3)
            rgb = rgb + (1 - alpha) * (bg - old)
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
