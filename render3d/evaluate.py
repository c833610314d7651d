"""Evaluate any scene model on a split: PSNR, SSIM, LPIPS where possible, side-by-side PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

import imageio.v3 as iio
import numpy as np
import torch

from render3d.metrics import lpips, lpips_status, psnr, ssim
from render3d.protocol import SceneModel


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[H, W, C]`` float in [0, 1] -> uint8 numpy."""
    return (image.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically (temporary file, then rename)."""
    tmp = path.with_name(path.stem + ".tmp.png")
    iio.imwrite(tmp, image)
    tmp.replace(path)


def write_error_map(path: Path, pred: torch.Tensor, target: torch.Tensor, vmax: float = 0.25) -> None:
    """Write ``|pred - target|`` (mean over channels) as a Turbo heat map PNG over ``[0, vmax]``."""
    from render3d.export.colormap import error_heatmap

    write_png(path, to_uint8(error_heatmap(pred, target, vmax)))


def evaluate_split(
    model: SceneModel, split: Any, image_dir: Optional[Path] = None, error_dir: Optional[Path] = None
) -> dict[str, Any]:
    """Render every view of ``split`` and compare with its images.

    Args:
        model: anything with ``render(cameras, mode)``.
        split: a :class:`render3d.datasets.Split`.
        image_dir: when given, ``[render | ground truth]`` PNGs are written there, one per view.
        error_dir: when given, per-view error heat maps (:func:`write_error_map`) are written there.

    Returns:
        mean ``psnr``, ``ssim``, ``lpips`` (None when unavailable, with ``lpips_note``), ``views``
        and ``per_view`` rows.
    """
    use_lpips, note = lpips_status()
    if image_dir is not None:
        if image_dir.exists():
            shutil.rmtree(image_dir)
        image_dir.mkdir(parents=True)
    if error_dir is not None:
        error_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(split)):
        target = split.image_float(i)
        out = model.render(split.cameras[i], mode="rgb")
        pred = out.rgb[0].cpu()
        row = {"view": split.names[i] if i < len(split.names) else str(i), "psnr": psnr(pred, target), "ssim": float(ssim(pred, target))}
        if use_lpips:
            row["lpips"] = lpips(pred, target)
        rows.append(row)
        if image_dir is not None:
            stem = Path(row["view"]).stem or f"{i:03d}"
            write_png(image_dir / f"{i:03d}_{stem}.png", to_uint8(torch.cat([pred, target], dim=1)))
        if error_dir is not None:
            write_error_map(error_dir / f"{i:03d}_{Path(row['view']).stem or i}_error.png", pred, target)
    mean = lambda key: float(np.mean([r[key] for r in rows])) if rows else float("nan")  # noqa: E731
    return {
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "lpips": mean("lpips") if use_lpips else None,
        "lpips_note": note,
        "views": len(rows),
        "per_view": rows,
    }
