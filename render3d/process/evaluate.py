"""How close recovered cameras are to reference ones, after the best similarity alignment.

Structure from motion fixes a scene only up to a similarity (scale, rotation, translation),
so :func:`camera_errors` first aligns the recovered camera centres to the reference ones
(Umeyama's least-squares similarity), then reports per camera the rotation error (degrees)
and the centre error as a share of the reference cameras' extent (the largest distance
between two reference centres).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render3d.cameras import opengl_to_opencv


@dataclass
class CameraErrors:
    """Per-camera errors after alignment: ``rotation_deg [N]``, ``center_rel [N]`` (share of the extent)."""

    rotation_deg: np.ndarray
    center_rel: np.ndarray

    def summary(self) -> dict[str, float]:
        """Median and maximum of both errors (rotation in degrees, centre in percent of the extent)."""
        return {
            "rotation_median_deg": float(np.median(self.rotation_deg)),
            "rotation_max_deg": float(self.rotation_deg.max()),
            "center_median_pct": 100.0 * float(np.median(self.center_rel)),
            "center_max_pct": 100.0 * float(self.center_rel.max()),
        }


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` minimising ``sum |s R source_i + t - target_i|^2`` over points ``[N, 3]`` (N >= 3)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.T @ xs / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rotation = u @ sign @ vt
    var_s = (xs ** 2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if var_s > 0 else 1.0
    return scale, rotation, mu_t - scale * rotation @ mu_s


def camera_errors(estimated_c2w: np.ndarray, reference_c2w: np.ndarray) -> CameraErrors:
    """Errors of ``estimated_c2w [N, 4, 4]`` against ``reference_c2w [N, 4, 4]`` (same cameras, same order, OpenCV axes)."""
    est_centers, ref_centers = estimated_c2w[:, :3, 3], reference_c2w[:, :3, 3]
    scale, rotation, shift = umeyama(est_centers, ref_centers)
    aligned = est_centers @ (scale * rotation).T + shift
    extent = max(float(np.linalg.norm(ref_centers[:, None] - ref_centers[None], axis=-1).max()), 1e-12)
    relative = rotation @ estimated_c2w[:, :3, :3]
    difference = np.einsum("nji,njk->nik", reference_c2w[:, :3, :3], relative)  # R_ref^T R_est per camera
    cos = np.clip((np.trace(difference, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return CameraErrors(np.degrees(np.arccos(cos)), np.linalg.norm(aligned - ref_centers, axis=1) / extent)


def processed_poses(folder: str | Path) -> dict[str, np.ndarray]:
    """Camera-to-world poses ``[4, 4]`` (OpenCV axes) of a processed scene folder's ``transforms.json``, by image file name."""
    meta = json.loads((Path(folder) / "transforms.json").read_text())
    return {Path(f["file_path"]).name: opengl_to_opencv(torch.tensor(f["transform_matrix"], dtype=torch.float64)).numpy()
            for f in meta["frames"]}
