"""Camera-path maths: quaternion rotations, keyframes and their interpolation, cameras from poses.

All poses are camera-to-world in the OpenCV convention of :class:`render3d.cameras.Cameras`
(+x right, +y down, +z forward); rotations are unit quaternions (w, x, y, z) of the
camera-to-world rotation.

A keyframe's ``time`` (seconds, all keyframes or none) places it in time; without it keyframes
are evenly spaced. ``smoothness`` blends piecewise linear motion (0) with a Catmull-Rom spline
(1); both pass through every keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras, intrinsics_matrix, qvec_to_rotmat
from render3d.errors import Render3DError

Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------- rotations


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z, w >= 0) of rotation matrices ``[..., 3, 3]``."""
    R = R.double()
    m = R.reshape(-1, 3, 3)
    out = torch.empty(m.shape[0], 4, dtype=torch.float64)
    for i, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = torch.sqrt(tr + 1.0) * 2
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = torch.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = torch.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = torch.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        qt = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in q])
        out[i] = qt * (1.0 if qt[0] >= 0 else -1.0)
    out = out / out.norm(dim=-1, keepdim=True)
    return out.reshape(*R.shape[:-2], 4)


def slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of unit quaternions ``[F, 4]`` at ``t [F]`` (shortest arc)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    t = t[:, None]
    small = sin < 1e-6
    w0 = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / sin.clamp_min(1e-12))
    w1 = torch.where(small, t, torch.sin(t * theta) / sin.clamp_min(1e-12))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- keyframes


@dataclass
class Keyframe:
    """One camera of a path: position, camera-to-world rotation (w, x, y, z), vertical FOV in degrees."""

    position: Vec3
    rotation: tuple[float, float, float, float]
    fov: float = 50.0
    time: Optional[float] = None

    @classmethod
    def from_c2w(cls, c2w: Tensor, fov: float = 50.0, time: Optional[float] = None) -> "Keyframe":
        q = rotmat_to_quat(c2w[:3, :3])
        return cls(tuple(float(v) for v in c2w[:3, 3]), tuple(float(v) for v in q), float(fov), time)  # type: ignore[arg-type]

    def c2w(self) -> Tensor:
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = qvec_to_rotmat(torch.tensor(self.rotation, dtype=torch.float64))
        m[:3, 3] = torch.tensor(self.position, dtype=torch.float64)
        return m


def _segment_params(n_keys: int, n_frames: int, loop: bool, times: Optional[Sequence[float]], seconds: float) -> Tensor:
    """The keyframe coordinate ``u`` (keyframe i at u = i) of every frame."""
    n_segments = n_keys if loop else n_keys - 1
    if times is None:
        if loop:
            return torch.arange(n_frames, dtype=torch.float64) * n_segments / n_frames
        return torch.linspace(0, n_segments, n_frames, dtype=torch.float64) if n_frames > 1 else torch.zeros(1, dtype=torch.float64)
    knots = list(times) + ([seconds] if loop else [])
    frame_times = np.linspace(0, knots[-1], n_frames, endpoint=not loop) if n_frames > 1 else np.zeros(1)
    return torch.from_numpy(np.interp(frame_times, knots, np.arange(len(knots), dtype=np.float64)))


def _neighbors(values: Tensor, index: Tensor, loop: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Values at keyframes i-1, i, i+1, i+2 (clamped, or wrapped for a loop)."""
    n = values.shape[0]
    idx = [index - 1, index, index + 1, index + 2]
    idx = [i % n if loop else i.clamp(0, n - 1) for i in idx]
    return tuple(values[i] for i in idx)  # type: ignore[return-value]


def catmull_rom(values: Tensor, u: Tensor, loop: bool = False) -> Tensor:
    """Uniform Catmull-Rom spline through ``values [K, D]`` at keyframe coordinates ``u [F]``."""
    n_segments = values.shape[0] if loop else values.shape[0] - 1
    index = u.floor().long().clamp(0, max(n_segments - 1, 0))
    t = (u - index)[:, None]
    p0, p1, p2, p3 = _neighbors(values, index, loop)
    m1, m2 = 0.5 * (p2 - p0), 0.5 * (p3 - p1)
    t2, t3 = t * t, t * t * t
    return (2 * t3 - 3 * t2 + 1) * p1 + (t3 - 2 * t2 + t) * m1 + (-2 * t3 + 3 * t2) * p2 + (t3 - t2) * m2


def _linear(values: Tensor, u: Tensor, loop: bool) -> Tensor:
    n_segments = values.shape[0] if loop else values.shape[0] - 1
    index = u.floor().long().clamp(0, max(n_segments - 1, 0))
    _, p1, p2, _ = _neighbors(values, index, loop)
    t = (u - index)[:, None]
    return (1 - t) * p1 + t * p2


def _aligned(quats: Tensor) -> Tensor:
    """Flip quaternion signs so consecutive keyframes lie on the same hemisphere."""
    out = quats.clone()
    for i in range(1, len(out)):
        if (out[i] * out[i - 1]).sum() < 0:
            out[i] = -out[i]
    return out


def interpolate_keyframes(
    keyframes: Sequence[Keyframe], n_frames: int, smoothness: float = 0.5, loop: bool = False,
    seconds: Optional[float] = None,
) -> tuple[Tensor, Tensor]:
    """Camera-to-world matrices ``[F, 4, 4]`` and vertical FOVs in degrees ``[F]`` along the keyframes.

    Positions and FOV blend linear and Catmull-Rom interpolation by ``smoothness``;
    rotations blend slerp and a Catmull-Rom spline on sign-aligned quaternions. Every
    keyframe is reached exactly at its time.
    """
    if not keyframes:
        raise Render3DError("a camera path needs at least one keyframe")
    if len(keyframes) == 1:
        c2w = keyframes[0].c2w()[None].expand(n_frames, 4, 4).clone()
        return c2w, torch.full((n_frames,), float(keyframes[0].fov), dtype=torch.float64)
    times = [k.time for k in keyframes]
    use_times = None if any(t is None for t in times) else times
    total = seconds if seconds is not None else (times[-1] if use_times else 1.0)
    u = _segment_params(len(keyframes), n_frames, loop, use_times, float(total or 0.0))
    s = float(min(max(smoothness, 0.0), 1.0))
    pos = torch.tensor([k.position for k in keyframes], dtype=torch.float64)
    fov = torch.tensor([[k.fov] for k in keyframes], dtype=torch.float64)
    quats = _aligned(torch.tensor([k.rotation for k in keyframes], dtype=torch.float64))
    quats = quats / quats.norm(dim=-1, keepdim=True)
    blend = lambda v: (1 - s) * _linear(v, u, loop) + s * catmull_rom(v, u, loop)  # noqa: E731
    n_segments = len(keyframes) if loop else len(keyframes) - 1
    index = u.floor().long().clamp(0, n_segments - 1)
    _, q1, q2, _ = _neighbors(quats, index, loop)
    q = (1 - s) * slerp(q1, q2, u - index) + s * catmull_rom(quats, u, loop)
    q = q / q.norm(dim=-1, keepdim=True)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n_frames, 1, 1)
    c2w[:, :3, :3] = qvec_to_rotmat(q)
    c2w[:, :3, 3] = blend(pos)
    return c2w, blend(fov)[:, 0]


# --------------------------------------------------------------------------- cameras


def cameras_from_poses(c2w: Tensor, fov_y_deg: Tensor, width: int, height: int) -> Cameras:
    """Pinhole cameras with principal point at the image centre and the given vertical FOVs."""
    fy = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fov_y_deg.double()))
    K = torch.stack([intrinsics_matrix(float(f), float(f), 0.5 * width, 0.5 * height) for f in fy])
    return Cameras(K, c2w.float(), width, height)

