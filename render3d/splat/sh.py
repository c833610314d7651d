"""Real spherical harmonics up to degree 3, in the basis order of the reference 3DGS code.

Colours are ``SH(dirs) · coeffs + 0.5``, clamped at 0 (as gsplat and 3DGS do), so a
Gaussian with only a DC coefficient ``c0`` has colour ``C0 * c0 + 0.5``.
"""

from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (1, 4, 9 or 16)."""
    return (degree + 1) ** 2


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values ``[..., (degree+1)^2]`` at unit directions ``dirs [..., 3]``."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, C0)]
    if degree >= 1:
        bases += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        bases += [
            C2[0] * xy,
            C2[1] * yz,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * xz,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        bases += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(bases, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH of ``degree`` for directions ``dirs [..., 3]`` (normalised here).

    Args:
        degree: active SH degree (0..3); only the first ``(degree+1)^2`` coefficients are used.
        dirs: viewing directions (camera to Gaussian), any length.
        coeffs: ``[..., K, 3]`` coefficients with ``K >= (degree+1)^2``.

    Returns:
        ``[..., 3]`` raw SH values (add 0.5 and clamp for colours).
    """
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n = num_sh_bases(degree)
    bases = sh_bases(degree, dirs)
    return (bases[..., None] * coeffs[..., :n, :]).sum(dim=-2)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient that reproduces colour ``rgb`` (in [0, 1])."""
    return (rgb - 0.5) / C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    """Colour of a DC coefficient."""
    return sh0 * C0 + 0.5


def sh_colors(means: Tensor, coeffs: Tensor, sh_degree: int, camera_centers: Tensor) -> Tensor:
    """Per-camera Gaussian colours ``[C, N, 3]`` from SH coefficients ``[N, K, 3]``: ``max(SH(d) . coeffs + 0.5, 0)``
    with ``d`` the direction from each of ``camera_centers [C, 3]`` to each of ``means [N, 3]``."""
    dirs = means[None] - camera_centers[:, None]
    return torch.clamp_min(eval_sh(sh_degree, dirs, coeffs[None].expand(dirs.shape[0], -1, -1, -1)) + 0.5, 0.0)
