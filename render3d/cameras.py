"""Pinhole cameras in the OpenCV convention.

``c2w`` maps camera to world; camera axes are +x right, +y down, +z forward.
Conversions from the Blender/OpenGL (+y up, -z forward) and COLMAP (world-to-camera)
conventions happen once, in the dataset loaders, with the helpers at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Index = Union[int, slice, Sequence[int], Tensor]


@dataclass
class Cameras:
    """A batch of ``N`` cameras sharing one image size.

    Attributes:
        K: intrinsics ``[N, 3, 3]`` (fx, fy, cx, cy in pixels; pixel centres at +0.5).
        c2w: camera-to-world ``[N, 4, 4]``, OpenCV axes.
        width: image width in pixels.
        height: image height in pixels.
        distortion: optional OpenCV coefficients ``[N, 4]`` = (k1, k2, p1, p2).
    """

    K: Tensor
    c2w: Tensor
    width: int
    height: int
    distortion: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if self.K.ndim == 2:
            self.K = self.K[None]
        if self.c2w.ndim == 2:
            self.c2w = self.c2w[None]
        if self.c2w.shape[-2:] == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=self.c2w.dtype, device=self.c2w.device)
            self.c2w = torch.cat([self.c2w, bottom.expand(*self.c2w.shape[:-2], 1, 4)], dim=-2)
        if self.K.shape[0] != self.c2w.shape[0]:
            if self.K.shape[0] == 1:
                self.K = self.K.expand(self.c2w.shape[0], 3, 3).clone()
            else:
                raise ValueError(f"K has {self.K.shape[0]} cameras but c2w has {self.c2w.shape[0]}")
        self.width = int(self.width)
        self.height = int(self.height)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: Index) -> "Cameras":
        if isinstance(index, int):
            index = [index]
        dist = None if self.distortion is None else self.distortion[index]
        return Cameras(self.K[index], self.c2w[index], self.width, self.height, dist)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device: Union[str, torch.device]) -> "Cameras":
        """Move to a device (float32)."""
        dist = None if self.distortion is None else self.distortion.to(device, torch.float32)
        return Cameras(self.K.to(device, torch.float32), self.c2w.to(device, torch.float32), self.width, self.height, dist)

    @property
    def viewmats(self) -> Tensor:
        """World-to-camera matrices ``[N, 4, 4]`` (what rasterisers call ``viewmats``)."""
        return torch.linalg.inv(self.c2w)

    @property
    def centers(self) -> Tensor:
        """Camera centres in world space ``[N, 3]``."""
        return self.c2w[:, :3, 3]

    def fov_y(self) -> Tensor:
        """Vertical field of view in radians ``[N]``."""
        return 2.0 * torch.atan(0.5 * self.height / self.K[:, 1, 1])

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras at ``factor`` times the resolution (e.g. 0.5 halves it)."""
        width = max(1, int(round(self.width * factor)))
        height = max(1, int(round(self.height * factor)))
        K = self.K.clone()
        K[:, 0, :] *= width / self.width
        K[:, 1, :] *= height / self.height
        return replace(self, K=K, width=width, height=height)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendered at an explicit ``width`` x ``height``."""
        K = self.K.clone()
        K[:, 0, :] *= width / self.width
        K[:, 1, :] *= height / self.height
        return replace(self, K=K, width=int(width), height=int(height))

    def pixel_directions(self, index: int = 0) -> Tensor:
        """Camera-space directions ``[H, W, 3]`` with z = 1 through pixel centres (distortion undone),
        so ``directions * z_depth`` is the camera-space point."""
        c2w = self.c2w[index]
        _, dirs = self.generate_rays(index)
        cam = dirs @ c2w[:3, :3]  # world -> camera rotation (inverse of an orthonormal matrix)
        return cam / cam[..., 2:3]

    def rays_at_pixels(self, index: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
        """World rays through pixel centres ``(px + 0.5, py + 0.5)`` of cameras ``index`` (all ``[B]``).

        Returns origins ``[B, 3]`` and unit directions ``[B, 3]``; lens distortion is undone.
        """
        K = self.K[index]
        x = (px.float() + 0.5 - K[:, 0, 2]) / K[:, 0, 0]
        y = (py.float() + 0.5 - K[:, 1, 2]) / K[:, 1, 1]
        if self.distortion is not None and bool(torch.any(self.distortion != 0)):
            x, y = undistort_points(x, y, self.distortion[index].T)
        dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
        c2w = self.c2w[index]
        dirs = (c2w[:, :3, :3] @ dirs_cam[..., None]).squeeze(-1)
        return c2w[:, :3, 3], dirs / dirs.norm(dim=-1, keepdim=True)

    def project(self, points: Tensor, index: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Pixel coordinates ``u, v`` (pixel centres at +0.5, lens distortion applied) and z-depth of world points.

        With ``index``, ``points [..., 3]`` in that camera give ``[...]`` each; without, ``points [N, 3]``
        in every camera give ``[C, N]``. Points behind a camera (``z <= 0``) get meaningless ``u, v``.
        """
        if index is not None:
            u, v, z = self[index].project(points.reshape(-1, 3))
            return u[0].reshape(points.shape[:-1]), v[0].reshape(points.shape[:-1]), z[0].reshape(points.shape[:-1])
        w2c = self.viewmats
        cam = torch.einsum("cij,nj->cni", w2c[:, :3, :3], points.to(w2c)) + w2c[:, None, :3, 3]
        z = cam[..., 2]
        safe = z.clamp_min(1e-9)
        K = self.K.to(cam)
        if self.distortion is not None and bool(torch.any(self.distortion != 0)):
            x, y = cam[..., 0] / safe, cam[..., 1] / safe
            k1, k2, p1, p2 = (c[:, None] for c in self.distortion.to(x).unbind(-1))
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2
            x, y = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            return K[:, None, 0, 0] * x + K[:, None, 0, 2], K[:, None, 1, 1] * y + K[:, None, 1, 2], z
        return K[:, None, 0, 0] * cam[..., 0] / safe + K[:, None, 0, 2], K[:, None, 1, 1] * cam[..., 1] / safe + K[:, None, 1, 2], z

    def pixels_hit(self, points: Tensor, index: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The pixel each world point lands on, shaped as by :meth:`project`: column and row indices
        (clamped into the image), z-depth, and whether the point is in front of the camera and inside the frame."""
        u, v, z = self.project(points, index)
        seen = (z > 0) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        return u.floor().long().clamp(0, self.width - 1), v.floor().long().clamp(0, self.height - 1), z, seen

    def generate_rays(self, index: int = 0) -> tuple[Tensor, Tensor]:
        """Rays through every pixel of camera ``index``: origins and unit directions ``[H, W, 3]``."""
        ys, xs = torch.meshgrid(
            torch.arange(self.height, device=self.device), torch.arange(self.width, device=self.device), indexing="ij"
        )
        which = torch.full((self.height * self.width,), index, dtype=torch.long, device=self.device)
        origins, dirs = self.rays_at_pixels(which, xs.reshape(-1), ys.reshape(-1))
        return origins.reshape(self.height, self.width, 3), dirs.reshape(self.height, self.width, 3)


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """A ``[3, 3]`` intrinsics matrix."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def undistort_points(x: Tensor, y: Tensor, coeffs: Tensor, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Invert the OpenCV radial-tangential model (k1, k2, p1, p2) on normalised coordinates."""
    k1, k2, p1, p2 = (coeffs[i] for i in range(4))
    xu, yu = x.clone(), y.clone()
    for _ in range(iterations):
        r2 = xu * xu + yu * yu
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * xu * yu + p2 * (r2 + 2 * xu * xu)
        dy = p1 * (r2 + 2 * yu * yu) + 2 * p2 * xu * yu
        xu = (x - dx) / radial
        yu = (y - dy) / radial
    return xu, yu


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Convert camera-to-world matrices from OpenGL/Blender axes (+y up, -z forward) to OpenCV."""
    out = c2w.clone()
    out[..., :3, 1] *= -1
    out[..., :3, 2] *= -1
    return out


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """Inverse of :func:`opengl_to_opencv` (the same flip)."""
    return opengl_to_opencv(c2w)


def qvec_to_rotmat(qvec: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from unit quaternions ``[..., 4]`` in (w, x, y, z) order."""
    q = qvec / qvec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world ``[4, 4]`` for a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image.
    """
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-6:  # looking straight along up: pick any perpendicular
        right = torch.linalg.cross(forward, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0] = right
    c2w[:3, 1] = down
    c2w[:3, 2] = forward
    c2w[:3, 3] = eye
    return c2w
