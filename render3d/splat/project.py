"""EWA projection of 3D Gaussians to the image plane, in pure PyTorch.

Same conventions and numerical rules as gsplat's ``fully_fused_projection`` (pinhole):
2D covariance ``J W Σ Wᵀ Jᵀ + eps2d·I`` with the Jacobian's x/y clamped to 1.3x the
field of view, radii ``ceil(3.33·σ)`` per axis, and Gaussians behind the near plane,
beyond the far plane or outside the image get radius 0 (culled).

In the antialiased mode (gsplat's ``rasterize_mode="antialiased"``, Mip-Splatting's 2D
filter) the ``eps2d`` blur is a screen-space low-pass filter whose energy is compensated:
each Gaussian's opacity is multiplied by ``sqrt(det(Σ2d) / det(Σ2d + eps2d·I))`` (at most
1), so a Gaussian seen smaller than a pixel fades instead of swelling to the filter's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from render3d.cameras import qvec_to_rotmat


@dataclass
class Projection:
    """Per-camera, per-Gaussian projected quantities (``C`` cameras, ``N`` Gaussians).

    Attributes:
        means2d: ``[C, N, 2]`` pixel coordinates of the centres.
        conics: ``[C, N, 3]`` inverse 2D covariance (a, b, c) = upper triangle.
        depths: ``[C, N]`` camera-space z.
        radii: ``[C, N, 2]`` int32 screen-space extents in x and y; 0 means culled.
        compensations: ``[C, N]`` opacity factors of the antialiased mode, in [0, 1]; None in the classic mode.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    compensations: Optional[Tensor] = None

    def opacities(self, opacities: Tensor, camera: int) -> Tensor:
        """``opacities [N]`` as camera ``camera`` composites them (compensated in the antialiased mode)."""
        return opacities if self.compensations is None else opacities * self.compensations[camera]


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances ``R S Sᵀ Rᵀ`` ``[N, 3, 3]`` from quaternions and (linear) scales."""
    M = qvec_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    covars: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    antialiased: bool = False,
) -> Projection:
    """Project Gaussians ``means [N, 3]``, ``covars [N, 3, 3]`` into ``C`` pinhole cameras.

    Args:
        viewmats: world-to-camera ``[C, 4, 4]`` (OpenCV axes).
        Ks: intrinsics ``[C, 3, 3]``.
        eps2d: screen-space blur added to the 2D covariance (low-pass filter).
        antialiased: compensate the blur's energy (``Projection.compensations``, see the module docstring).
    """
    R = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    t = viewmats[:, None, :3, 3]  # [C, 1, 3]
    means_c = (R @ means[None, :, :, None]).squeeze(-1) + t  # [C, N, 3]
    covars_c = R @ covars[None] @ R.transpose(-1, -2)  # [C, N, 3, 3]

    tx, ty, tz = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    tx_c = tz * torch.maximum(torch.minimum(tx / tz, lim_x_pos), -lim_x_neg)
    ty_c = tz * torch.maximum(torch.minimum(ty / tz, lim_y_pos), -lim_y_neg)

    zeros = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zeros, -fx * tx_c / (tz * tz), zeros, fy / tz, -fy * ty_c / (tz * tz)], dim=-1)
    J = J.reshape(*tz.shape, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)

    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_blurred = a * c - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    det = det_blurred.clamp_min(1e-10)
    compensations = None
    if antialiased:
        det_sharp = (a - eps2d) * (c - eps2d) - cov2d[..., 0, 1] * cov2d[..., 1, 0]
        ratio = torch.where(det_blurred > 1e-10, det_sharp / det, torch.zeros_like(det))
        compensations = ratio.clamp_min(0.0).sqrt()
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)
    with torch.no_grad():
        radius = torch.stack([torch.ceil(3.33 * a.sqrt()), torch.ceil(3.33 * c.sqrt())], dim=-1)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane)
        inside = (
            (means2d[..., 0] + radius[..., 0] > 0)
            & (means2d[..., 0] - radius[..., 0] < width)
            & (means2d[..., 1] + radius[..., 1] > 0)
            & (means2d[..., 1] - radius[..., 1] < height)
        )
        radius = torch.where((valid & inside)[..., None], radius, torch.zeros_like(radius))
        radius = torch.nan_to_num(radius, nan=0.0, posinf=0.0)
    return Projection(means2d=means2d, conics=conics, depths=tz, radii=radius.int(), compensations=compensations)
