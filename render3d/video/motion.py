"""Camera motion for clips: random smooth paths around a scene, orbit arcs, and poses relative to the first camera.

Paths are built with :mod:`render3d.camera_paths` (keyframes interpolated by Catmull-Rom
splines and quaternion slerp), in the OpenCV camera convention of :class:`Cameras`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from render3d.camera_paths.framing import SceneFrame, orbit_poses
from render3d.camera_paths.interpolation import Keyframe, interpolate_keyframes
from render3d.cameras import look_at


@dataclass(frozen=True)
class PathStyle:
    """How random clip paths move: total azimuth swept over a clip, elevation band, radius and aim jitter."""

    sweep_deg: tuple[float, float] = (30.0, 90.0)  # |azimuth swept| per clip, uniform in this range, either direction
    elevation_deg: tuple[float, float] = (10.0, 70.0)
    elevation_change_deg: float = 15.0  # the end elevation is within this of the start
    radius_scale: tuple[float, float] = (0.85, 1.15)
    aim_jitter: float = 0.05  # standard deviation of the look-at point, in units of the frame's radius
    keyframes: int = 4


def _orbit_basis(up: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors spanning the plane perpendicular to ``up`` (as :func:`orbit_poses` uses)."""
    ref = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(ref @ up)) > 0.9:
        ref = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    a = ref - (ref @ up) * up
    a = a / a.norm()
    return a, torch.linalg.cross(up, a)


def _eye(frame: SceneFrame, azimuth: float, elevation_deg: float, radius: float) -> Tensor:
    a, b = _orbit_basis(frame.up.double())
    el = math.radians(elevation_deg)
    return frame.center.double() + radius * (math.cos(el) * (math.cos(azimuth) * a + math.sin(azimuth) * b) + math.sin(el) * frame.up.double())


def random_path(frame: SceneFrame, frames: int, rng: np.random.Generator, style: PathStyle = PathStyle()) -> tuple[Tensor, Tensor]:
    """A random smooth path of ``frames`` cameras looking at (about) the scene centre.

    Returns camera-to-world ``[T, 4, 4]`` (float64) and vertical FOVs in degrees ``[T]``.
    """
    k = style.keyframes
    start = rng.uniform(0, 2 * math.pi)
    sweep = math.radians(rng.uniform(*style.sweep_deg)) * rng.choice([-1.0, 1.0])
    lo, hi = style.elevation_deg
    el0 = rng.uniform(lo, hi)
    el1 = float(np.clip(el0 + rng.uniform(-style.elevation_change_deg, style.elevation_change_deg), lo, hi))
    keys = []
    for i in range(k):
        w = i / (k - 1)
        radius = frame.radius * rng.uniform(*style.radius_scale)
        target = frame.center.double() + torch.from_numpy(rng.normal(0.0, style.aim_jitter * frame.radius, 3))
        eye = _eye(frame, start + w * sweep, (1 - w) * el0 + w * el1, radius)
        keys.append(Keyframe.from_c2w(look_at(eye, target, frame.up.double()), frame.fov_deg))
    return interpolate_keyframes(keys, frames, smoothness=1.0)


def orbit_arc(frame: SceneFrame, frames: int, degrees_per_frame: float, start_c2w: Tensor | None = None) -> Tensor:
    """``frames`` poses orbiting ``frame.center`` by ``degrees_per_frame`` each (a slice of :func:`orbit_poses`).

    With ``start_c2w`` the arc is moved rigidly so that it starts at that camera (only the
    motion relative to the first camera matters to the world model).
    """
    per_turn = max(frames, int(round(360.0 / max(abs(degrees_per_frame), 1e-3))))
    step = 1 if degrees_per_frame >= 0 else -1
    poses = orbit_poses(frame, per_turn)[[(step * i) % per_turn for i in range(frames)]]
    if start_c2w is not None:
        poses = start_c2w.double() @ torch.linalg.inv(poses[0]) @ poses
    return poses


def relative_poses(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., T, 4, 4]`` expressed in the first camera's frame (frame 0 becomes the identity)."""
    first = c2w[..., :1, :, :]
    return torch.linalg.inv(first) @ c2w
