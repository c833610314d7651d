"""Colour maps for depth and error images, and a labelled legend bar."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Google's polynomial fit of the Turbo colour map (Mikhailov 2019), exact to about 1/255.
_TURBO_R = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_TURBO_G = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_TURBO_B = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)


def turbo(x: Tensor) -> Tensor:
    """Turbo colours ``[..., 3]`` in [0, 1] for values ``x`` in [0, 1] (clamped)."""
    x = x.clamp(0, 1).double()
    powers = torch.stack([x**i for i in range(6)], dim=-1)
    coeffs = torch.tensor([_TURBO_R, _TURBO_G, _TURBO_B], dtype=torch.float64)
    return (powers @ coeffs.T).clamp(0, 1).float()


def colorize(values: Tensor, lo: float, hi: float, valid: Tensor | None = None, invalid_color: float = 0.0) -> Tensor:
    """``[H, W]`` (or ``[H, W, 1]``) values mapped by Turbo over ``[lo, hi]``; ``valid`` False pixels get ``invalid_color``."""
    v = values.reshape(values.shape[0], values.shape[1]).float()
    rgb = turbo((v - lo) / max(hi - lo, 1e-12))
    if valid is not None:
        rgb = torch.where(valid.reshape(v.shape)[..., None], rgb, torch.full_like(rgb, invalid_color))
    return rgb


def error_heatmap(pred: Tensor, target: Tensor, vmax: float = 0.25) -> Tensor:
    """Per-pixel mean absolute error of two ``[H, W, 3]`` images as a Turbo heat map over ``[0, vmax]``."""
    err = (pred.float().cpu() - target.float().cpu()).abs().mean(-1)
    return colorize(err, 0.0, vmax)


def draw_legend(image: np.ndarray, lo: float, hi: float, unit: str = "") -> np.ndarray:
    """``image [H, W, 3]`` uint8 with a Turbo bar and its ``lo`` / ``hi`` labels along the bottom edge."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    bar_h = max(4, h // 24)
    out = image.copy()
    ramp = turbo(torch.linspace(0, 1, w))
    out[h - bar_h :] = (ramp[None].expand(bar_h, w, 3).numpy() * 255 + 0.5).astype(np.uint8)
    if h >= 64 and w >= 96:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        y = h - bar_h - 12
        left, right = f"{lo:.3g}{unit}", f"{hi:.3g}{unit}"
        for text, x in ((left, 2), (right, w - 2 - draw.textlength(right))):
            draw.text((x + 1, y + 1), text, fill=(0, 0, 0))
            draw.text((x, y), text, fill=(255, 255, 255))
        out = np.asarray(pil)
    return out
