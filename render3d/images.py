"""Image helpers shared by eval, exports and the viewer: 8-bit conversion, PNG writing,
depth ranges, background swaps and depth unprojection."""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.files import write_bytes_atomic


def to_uint8(image: Tensor) -> np.ndarray:
    """``[..., C]`` float in [0, 1] -> uint8 numpy (rounded, clamped)."""
    return (image.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def write_png(path: Union[str, os.PathLike], image: np.ndarray) -> None:
    """Write a uint8 ``[H, W, C]`` image as PNG, atomically (encoded in memory, then written in one go)."""
    import imageio.v3 as iio

    write_bytes_atomic(path, iio.imwrite("<bytes>", image, extension=".png"))


def depth_range(depth: Tensor, alpha: Tensor, max_values: int = 65536) -> tuple[float, float]:
    """Near / far for colour-mapping depth: 2nd and 98th percentiles of covered pixels (``alpha > 0.5``).

    ``(0, 1)`` when nothing is covered; at most ``max_values`` pixels (a fixed random subset) are used.
    """
    valid = depth[(alpha > 0.5) & (depth > 0)].float().cpu()
    if valid.numel() < 2:
        return 0.0, 1.0
    if valid.numel() > max_values:
        valid = valid[torch.randint(valid.numel(), (max_values,), generator=torch.Generator().manual_seed(0))]
    lo, hi = torch.quantile(valid, torch.tensor([0.02, 0.98])).tolist()
    return lo, max(hi, lo + 1e-6)


def recomposite(rgb: Tensor, alpha: Tensor, old_background: Tensor, new_background: Optional[Tensor]) -> Tensor:
    """``rgb`` (composited on ``old_background``) composited on ``new_background`` instead; unchanged when None.

    Either background is one colour ``[3]`` or any shape that broadcasts against ``rgb`` (e.g. one per view ``[B, 1, 1, 3]``).
    """
    if new_background is None:
        return rgb
    old = old_background.to(rgb)
    new = new_background.to(rgb)
    if old.ndim == 1:
        old = old.reshape(*([1] * (rgb.ndim - 1)), 3)
    if new.ndim == 1:
        new = new.reshape(*([1] * (rgb.ndim - 1)), 3)
    return (rgb + (1.0 - alpha) * (new - old)).clamp(0, 1)


def unproject_depth(cameras: Cameras, index: int, depth: Tensor) -> Tensor:
    """World points ``[H, W, 3]`` where camera ``index``'s z-depth map ``[H, W]`` (or ``[H, W, 1]``) lands."""
    if depth.ndim == 3:
        depth = depth[..., 0]
    dirs = cameras.pixel_directions(index).to(depth.device)  # z = 1, so dirs * depth is the camera-space point
    c2w = cameras.c2w[index].to(depth.device).float()
    return (dirs * depth[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]
