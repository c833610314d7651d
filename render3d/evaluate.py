"""Evaluate any scene model on a split: PSNR, SSIM, LPIPS where possible, depth error where the
data has depth, and side-by-side PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from render3d.images import to_uint8, write_png
from render3d.metrics import lpips, lpips_status, psnr, ssim
from render3d.protocol import SceneModel


def write_error_map(path: Path, pred: torch.Tensor, target: torch.Tensor, vmax: float = 0.25) -> None:
    """Write ``|pred - target|`` (mean over channels) as a Turbo heat map PNG over ``[0, vmax]``."""
    from render3d.export.colormap import error_heatmap

    write_png(path, to_uint8(error_heatmap(pred, target, vmax)))


def depth_error(pred: torch.Tensor, target: torch.Tensor) -> Optional[float]:
    """Mean absolute z-depth error over pixels whose true depth is known (> 0), or None if none is."""
    known = target > 0
    if not bool(known.any()):
        return None
    return float((pred.reshape(target.shape) - target).abs()[known].mean())


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete PNGs of an earlier evaluation that this one did not write."""
    for old in folder.glob("*.png"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def evaluate_split(
    model: SceneModel, split: Any, image_dir: Optional[Path] = None, error_dir: Optional[Path] = None
) -> dict[str, Any]:
    """Render every view of ``split`` and compare with its images.

    Args:
        model: anything with ``render(cameras, mode)``.
        split: a :class:`render3d.datasets.Split`.
        image_dir: when given, ``[render | ground truth]`` PNGs are written there, one per view
            (each atomically; renders of an earlier evaluation that are not rewritten are removed at the end).
        error_dir: when given, per-view error heat maps (:func:`write_error_map`) are written there.

    Returns:
        mean ``psnr``, ``ssim``, ``lpips`` (None when unavailable, with ``lpips_note``), ``depth_mae``
        (mean absolute z-depth error, when the split has depth maps), ``views`` and ``per_view`` rows.
    """
    use_lpips, note = lpips_status()
    written: dict[Path, set[str]] = {d: set() for d in (image_dir, error_dir) if d is not None}
    rows = []
    for i in range(len(split)):
        target = split.image_float(i)
        out = model.render(split.cameras[i], mode="rgb")
        pred = out.rgb[0].detach().cpu()
        row = {"view": split.names[i] if i < len(split.names) else str(i), "psnr": psnr(pred, target), "ssim": float(ssim(pred, target))}
        if use_lpips:
            row["lpips"] = lpips(pred, target)
        if split.depths is not None:
            row["depth_mae"] = depth_error(out.depth[0, ..., 0].detach().cpu(), split.depths[i].float())
        rows.append(row)
        stem = Path(row["view"]).stem or f"{i:03d}"
        if image_dir is not None:
            name = f"{i:03d}_{stem}.png"
            write_png(image_dir / name, to_uint8(torch.cat([pred, target], dim=1)))
            written[image_dir].add(name)
        if error_dir is not None:
            name = f"{i:03d}_{stem}_error.png"
            write_error_map(error_dir / name, pred, target)
            written[error_dir].add(name)
    for folder, names in written.items():
        _remove_stale(folder, names)

    def mean(key: str) -> Optional[float]:
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    result = {
        "psnr": mean("psnr") if rows else float("nan"),
        "ssim": mean("ssim") if rows else float("nan"),
        "lpips": mean("lpips") if use_lpips else None,
        "lpips_note": note,
        "views": len(rows),
        "per_view": rows,
    }
    if split.depths is not None:
        result["depth_mae"] = mean("depth_mae")
    return result


def refine_split_poses(model: SceneModel, split: Any, scene_scale: float, steps: int = 100) -> Any:
    """``split`` with each view's pose fitted against the frozen ``model`` (``render3d eval --refine-test-poses``).

    Raises:
        Render3DError: the model's renders are not differentiable in the pose (no
            :class:`~render3d.protocol.PoseDifferentiable` capability).
    """
    from dataclasses import replace

    from render3d.errors import Render3DError
    from render3d.pose_correction import corrected_c2w, fit_poses
    from render3d.protocol import PoseDifferentiable

    if not isinstance(model, PoseDifferentiable):
        raise Render3DError(f"--refine-test-poses needs a model whose renders are differentiable in the camera pose; "
                            f"{type(model).__name__} is not: drop --refine-test-poses")
    parameters = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    trainable = [p.requires_grad for p in parameters]
    for p in parameters:  # the model stays frozen: only the poses are fitted
        p.requires_grad_(False)
    cameras = split.cameras.to(next(iter(model.buffers())).device) if isinstance(model, torch.nn.Module) else split.cameras
    try:
        deltas = fit_poses(model.render_corrected, cameras, split.image_float, scene_scale, steps=steps,
                           pixels=getattr(model, "pose_fit_pixels", 0))
    finally:
        for p, flag in zip(parameters, trainable):
            p.requires_grad_(flag)
    refined = replace(split.cameras, c2w=corrected_c2w(split.cameras.c2w, deltas.to(split.cameras.c2w), scene_scale))
    return replace(split, cameras=refined)


def fitted_gain(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The per-channel gain ``[3]`` that best maps ``pred`` to ``target`` (``[..., 3]``, least squares), within [0.1, 10]:
    the form of ``--splat.appearance exposure``'s per-image correction."""
    p, t = pred.reshape(-1, 3).double(), target.reshape(-1, 3).double()
    gain = (p * t).sum(0) / (p * p).sum(0).clamp_min(1e-12)
    return gain.clamp(0.1, 10.0).float()


def evaluate_appearance_fit(model: SceneModel, split: Any) -> dict[str, Any]:
    """NeRF-W's protocol (``render3d eval --appearance-fit half``): for each view of ``split``, fit a per-channel gain
    (:func:`fitted_gain`) between the render and the image on the left half of the view, apply it to the right half
    and score that half only. Models trained with a per-image appearance are scored with their average look; this
    lets each test image's own exposure be fitted without seeing the pixels it is scored on.

    Returns:
        mean ``psnr`` and ``ssim`` of the right halves, ``views``, and ``per_view`` rows with each ``gain``.
    """
    rows = []
    for i in range(len(split)):
        target = split.image_float(i)
        pred = model.render(split.cameras[i], mode="rgb").rgb[0].detach().cpu()
        half = target.shape[1] // 2
        gain = fitted_gain(pred[:, :half], target[:, :half])
        right = (pred[:, half:] * gain).clamp(0.0, 1.0)
        rows.append({"view": split.names[i] if i < len(split.names) else str(i), "psnr": psnr(right, target[:, half:]),
                     "ssim": float(ssim(right, target[:, half:])), "gain": [round(float(g), 5) for g in gain]})
    return {"protocol": "half", "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else float("nan"),
            "ssim": float(np.mean([r["ssim"] for r in rows])) if rows else float("nan"), "views": len(rows), "per_view": rows}
