"""Generated camera paths: the scene's frame (from its cameras or a bounding box), orbits, the LLFF
spiral and keyframes picked from a dataset's cameras.

Poses are camera-to-world matrices in the OpenCV convention of :class:`render3d.cameras.Cameras`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from render3d.camera_paths.interpolation import Keyframe
from render3d.cameras import Cameras, look_at


# --------------------------------------------------------------------------- generated paths


@dataclass
class SceneFrame:
    """Where a scene sits, estimated from its training cameras: centre, up, typical radius and elevation."""

    center: Tensor
    up: Tensor
    radius: float
    elevation_deg: float
    fov_deg: float


def scene_frame(cameras: Cameras, bounds: Optional[Tensor] = None) -> SceneFrame:
    """The point the cameras look at (least squares over their optical axes), the mean up and radius."""
    c2w = cameras.c2w.double()
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]
    up = -c2w[:, :3, 1].mean(0)
    up = up / up.norm().clamp_min(1e-12)
    eye = torch.eye(3, dtype=torch.float64)
    proj = eye[None] - dirs[:, :, None] * dirs[:, None, :]
    A, b = proj.sum(0), (proj @ origins[:, :, None]).sum(0)[:, 0]
    center = torch.linalg.lstsq(A, b).solution if torch.linalg.cond(A) < 1e6 else None
    if center is None or not torch.isfinite(center).all():
        center = 0.5 * (bounds[0] + bounds[1]).double() if bounds is not None else origins.mean(0)
    offsets = origins - center
    radius = float(offsets.norm(dim=-1).median())
    sin_el = (offsets @ up) / offsets.norm(dim=-1).clamp_min(1e-12)
    elevation = float(torch.rad2deg(torch.asin(sin_el.clamp(-1, 1))).median())
    fov = float(torch.rad2deg(cameras.fov_y()).median())
    return SceneFrame(center, up, radius, elevation, fov)


UP_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
            "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0)}


def frame_from_bounds(bounds: Tensor, up: str = "-y", fov_deg: float = 45.0, elevation_deg: float = 20.0) -> SceneFrame:
    """A frame for content without cameras: centred on the box, far enough that the whole box fits the view.

    ``up`` names the world axis that points up (``-y`` is the COLMAP / OpenCV world of most 3DGS files).
    """
    if up not in UP_AXES:
        from render3d.errors import Render3DError

        raise Render3DError(f"--up {up!r} is not an axis: use one of {', '.join(UP_AXES)}")
    lo, hi = bounds[0].double(), bounds[1].double()
    half_diagonal = max(float((hi - lo).norm()) / 2, 1e-6)
    radius = 1.1 * half_diagonal / math.sin(math.radians(fov_deg) / 2)
    return SceneFrame((lo + hi) / 2, torch.tensor(UP_AXES[up], dtype=torch.float64), radius, elevation_deg, fov_deg)


def orbit_poses(frame: SceneFrame, n_frames: int, elevation_deg: Optional[float] = None, radius_scale: float = 1.0) -> Tensor:
    """``n_frames`` camera-to-world matrices on a circle around ``frame.center``, looking at it (closed loop)."""
    up = frame.up
    ref = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(ref @ up)) > 0.9:
        ref = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    a = ref - (ref @ up) * up
    a = a / a.norm()
    b = torch.linalg.cross(up, a)
    el = math.radians(frame.elevation_deg if elevation_deg is None else elevation_deg)
    r = frame.radius * radius_scale
    poses = []
    for i in range(n_frames):
        theta = 2 * math.pi * i / n_frames
        eye = frame.center + r * (math.cos(el) * (math.cos(theta) * a + math.sin(theta) * b) + math.sin(el) * up)
        poses.append(look_at(eye, frame.center, up))
    return torch.stack(poses)


def views_around(bounds: Tensor, count: int = 48, size: int = 256) -> Cameras:
    """``count`` square ``size``-pixel views (45° field of view) on three orbits around the box ``bounds [2, 3]``,
    at -30°, 15° and 60° elevation: the views of content that has no cameras of its own."""
    from render3d.camera_paths.interpolation import cameras_from_poses

    poses = [orbit_poses(frame_from_bounds(bounds, elevation_deg=el), count // 3 or 1) for el in (-30.0, 15.0, 60.0)]
    c2w = torch.cat(poses)
    return cameras_from_poses(c2w, torch.full((len(c2w),), 45.0, dtype=torch.float64), size, size)


def spiral_poses(cameras: Cameras, near_far: tuple[float, float], n_frames: int, rotations: float = 2.0) -> Tensor:
    """The LLFF spiral for forward-facing captures: around the mean pose, looking at the focus depth."""
    c2w = cameras.c2w.double()
    center = c2w[:, :3, 3].mean(0)
    forward = c2w[:, :3, 2].mean(0)
    forward = forward / forward.norm()
    right = torch.linalg.cross(c2w[:, :3, 1].mean(0), forward)  # OpenCV: x = y (down) cross z (forward)
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    near, far = near_far
    focus = 1.0 / ((1 - 0.75) / near + 0.75 / far) if near > 0 and far > near else float((c2w[:, :3, 3] - center).norm(dim=-1).max() * 3 + 1)
    rel = c2w[:, :3, 3] - center
    radii = torch.stack([(rel @ right).abs(), (rel @ up).abs(), (rel @ forward).abs()], dim=-1)
    radii = torch.quantile(radii, 0.9, dim=0).clamp_min(1e-3)
    poses = []
    for i in range(n_frames):
        t = 2 * math.pi * rotations * i / n_frames
        eye = center + radii[0] * math.cos(t) * right + radii[1] * math.sin(t) * up + radii[2] * math.sin(0.5 * t) * forward
        target = center + focus * forward
        poses.append(look_at(eye, target, up))
    return torch.stack(poses)


def keyframes_from_cameras(cameras: Cameras, count: int) -> list[Keyframe]:
    """``count`` evenly chosen cameras of a set as keyframes (for ``--path interpolate``)."""
    count = max(2, min(count, len(cameras)))
    picks = torch.linspace(0, len(cameras) - 1, count).round().long().tolist()
    fovs = torch.rad2deg(cameras.fov_y())
    return [Keyframe.from_c2w(cameras.c2w[i].double(), float(fovs[i])) for i in picks]
