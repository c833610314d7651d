"""Scene extent estimates shared by the loaders: ``bounds`` and ``near_far``.

``forward_facing`` (unless the format says): every camera looks within 30 degrees of the
mean viewing direction (:func:`looks_forward_facing`).

Rules, in order of preference (see :func:`estimate_bounds` and :func:`estimate_near_far`):

bounds (axis-aligned box ``[2, 3]`` holding the content)
    1. a box the format states (instant-ngp ``aabb_scale``), passed in by the loader;
    2. sparse points: the 1st..99th percentile of the points on each axis, padded by 5%
       of its size (robust to stray COLMAP points);
    3. forward-facing captures with a near/far range: the box around every camera's
       view frustum between near and far;
    4. otherwise (object-centric, inward-facing): a cube centred on the point the cameras
       look at (least-squares intersection of their optical axes) with half-size half the
       median camera distance to it (Blender scenes: the ``[-2, 2]^3`` cube).

near_far (typical ray range in world units)
    1. a range the format states (LLFF per-image bounds), passed in by the loader;
    2. sparse points: depths of the points that fall inside each camera's image, 0.1th and
       99.9th percentiles per camera (LLFF's own rule), min / max over cameras;
    3. otherwise: from the bounds box: far = distance to its farthest corner, near =
       distance to the box (at least 1% of far) over all cameras.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def looks_forward_facing(c2w: np.ndarray, max_angle_deg: float = 30.0) -> bool:
    """True when every camera looks within ``max_angle_deg`` of the cameras' mean viewing direction.

    LLFF-style captures spread about 10 degrees; orbits and object-centric captures far more.
    """
    forward = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    mean = forward.mean(0)
    norm = np.linalg.norm(mean)
    if norm < 1e-6:
        return False
    cos = forward @ (mean / norm)
    return bool(cos.min() > np.cos(np.radians(max_angle_deg)))


def camera_focus(c2w: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to all optical axes, or the mean centre when the axes are parallel."""
    centers = c2w[:, :3, 3]
    dirs = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
    a = proj.sum(0)
    b = np.einsum("nij,nj->i", proj, centers)
    if len(c2w) < 2 or np.linalg.cond(a) > 1e4:
        return centers.mean(0)
    return np.linalg.solve(a, b)


def bounds_from_points(points: np.ndarray, lo: float = 1.0, hi: float = 99.0, pad: float = 0.05) -> np.ndarray:
    """Robust box ``[2, 3]`` of a point cloud: per-axis percentiles, padded by ``pad`` of its size."""
    low, high = np.percentile(points, lo, axis=0), np.percentile(points, hi, axis=0)
    margin = (high - low) * pad
    return np.stack([low - margin, high + margin])


def bounds_from_frusta(c2w: np.ndarray, K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """Box ``[2, 3]`` around every camera's view frustum between depths ``near`` and ``far``."""
    corners_px = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    corners = []
    for pose, k in zip(c2w, K):
        rays = corners_px @ np.linalg.inv(k).T  # z = 1 camera-space directions
        for depth in (near, far):
            corners.append(rays * depth @ pose[:3, :3].T + pose[:3, 3])
    pts = np.concatenate(corners)
    return np.stack([pts.min(0), pts.max(0)])


def bounds_around_focus(c2w: np.ndarray) -> np.ndarray:
    """Cube ``[2, 3]`` centred on :func:`camera_focus`, half-size half the median camera distance."""
    focus = camera_focus(c2w)
    half = 0.5 * float(np.median(np.linalg.norm(c2w[:, :3, 3] - focus, axis=1)))
    half = max(half, 1e-3)
    return np.stack([focus - half, focus + half])


def near_far_from_points(
    c2w: np.ndarray, K: np.ndarray, width: int, height: int, points: np.ndarray, max_points: int = 20000
) -> Optional[tuple[float, float]]:
    """Range of depths of the points each camera sees (0.1 / 99.9 percentiles); None if no camera sees any."""
    if len(points) > max_points:
        points = points[np.random.default_rng(0).choice(len(points), max_points, replace=False)]
    nears, fars = [], []
    for pose, k in zip(c2w, K):
        cam = (points - pose[:3, 3]) @ pose[:3, :3]  # world -> camera (rotation is orthonormal)
        z = cam[:, 2]
        front = z > 1e-9
        uv = cam[front, :2] / z[front, None] * k[[0, 1], [0, 1]] + k[[0, 1], [2, 2]]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        depths = z[front][inside]
        if len(depths):
            nears.append(np.percentile(depths, 0.1))
            fars.append(np.percentile(depths, 99.9))
    if not nears:
        return None
    return float(min(nears)), float(max(fars))


def near_far_from_box(c2w: np.ndarray, bounds: np.ndarray) -> tuple[float, float]:
    """Near / far range that covers ``bounds`` from every camera centre."""
    centers = c2w[:, :3, 3]
    corners = np.array([[x, y, z] for x in bounds[:, 0] for y in bounds[:, 1] for z in bounds[:, 2]])
    far = float(np.linalg.norm(centers[:, None] - corners[None], axis=-1).max())
    outside = np.maximum(np.maximum(bounds[0] - centers, centers - bounds[1]), 0.0)
    near = float(np.linalg.norm(outside, axis=1).min())
    far = max(far, 1e-3)
    return max(near, 0.01 * far), far


def estimate_bounds(
    c2w: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    points: Optional[np.ndarray] = None,
    near_far: Optional[tuple[float, float]] = None,
    forward_facing: bool = False,
) -> np.ndarray:
    """Scene box ``[2, 3]`` by the rules in the module docstring (2-4; rule 1 is the caller's)."""
    if points is not None and len(points) >= 4:
        return bounds_from_points(points)
    if forward_facing and near_far is not None:
        return bounds_from_frusta(c2w, K, width, height, *near_far)
    return bounds_around_focus(c2w)


def estimate_near_far(
    c2w: np.ndarray, K: np.ndarray, width: int, height: int, bounds: np.ndarray, points: Optional[np.ndarray] = None
) -> tuple[float, float]:
    """Near / far by the rules in the module docstring (2-3; rule 1 is the caller's)."""
    if points is not None and len(points):
        found = near_far_from_points(c2w, K, width, height, points)
        if found is not None:
            return found
    return near_far_from_box(c2w, bounds)
