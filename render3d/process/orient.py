"""Turn a reconstruction upright, centre it and give it a unit-like scale.

Structure from motion returns a scene in an arbitrary frame (COLMAP's first camera). The
processed scene is moved by one similarity ``x' = s * R @ x + t`` so that:

- **up** is +z: the mean of the cameras' up vectors (OpenCV ``-y`` axis) maps to +z, by
  the smallest rotation that does it;
- **the centre** is the origin: the point closest to every camera's optical axis (where
  the cameras look); for a forward-facing capture, whose axes barely cross, the median of
  the sparse points in front of the cameras;
- **the scale** puts the farthest camera at distance 1 from the centre.

The 3x4 matrix ``[s R | t]`` is recorded as ``applied_transform`` (and ``s`` as
``applied_scale``) in ``transforms.json``, as nerfstudio does.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from render3d.datasets.geometry import camera_focus, looks_forward_facing


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``[3, 3]`` taking the unit vector ``a`` to the unit vector ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:  # opposite: turn half-way round any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def scene_center(c2w: np.ndarray, points: Optional[np.ndarray]) -> np.ndarray:
    """Where the cameras look (see the module docstring); ``c2w [N, 4, 4]`` OpenCV, ``points [M, 3]``."""
    centers = c2w[:, :3, 3]
    if not looks_forward_facing(c2w):
        focus = camera_focus(c2w)
        forward = c2w[:, :3, 2]
        if np.mean(np.einsum("nd,nd->n", focus[None] - centers, forward) > 0) > 0.5:  # in front of most cameras
            return focus
    if points is not None and len(points):
        return np.median(points, axis=0)
    return centers.mean(0)


def orientation_transform(c2w: np.ndarray, points: Optional[np.ndarray] = None) -> np.ndarray:
    """The similarity ``[3, 4] = [s R | t]`` that makes the scene upright, centred and unit-sized.

    Args:
        c2w: ``[N, 4, 4]`` camera-to-world poses in OpenCV axes (+y down).
        points: optional sparse points ``[M, 3]`` (used for forward-facing captures).
    """
    up = -c2w[:, :3, 1].mean(0)
    rotation = rotation_between(up, np.array([0.0, 0.0, 1.0])) if np.linalg.norm(up) > 1e-9 else np.eye(3)
    center = scene_center(c2w, points)
    reach = float(np.linalg.norm(c2w[:, :3, 3] - center, axis=1).max())
    scale = 1.0 / reach if reach > 1e-12 else 1.0
    return np.concatenate([scale * rotation, (-scale * rotation @ center)[:, None]], axis=1)
