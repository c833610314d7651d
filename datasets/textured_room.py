"""A procedural textured room with exact cameras, for checking structure from motion.

The bundled default scene (:mod:`.synthetic`) is smooth-shaded and finds too few SIFT
features to reconstruct; this scene is the opposite: the inside of the box ``[-1, 1]^3``
and a cube ``[-0.25, 0.25]^3`` in its middle, every face covered with its own colour noise
and sharp-edged rectangles (fixed by the seed). Views are ray-cast in numpy.

>>> cameras = orbit_cameras(36, 128)                        # doctest: +SKIP
>>> images = render_room(cameras)                           # uint8 [36, 128, 128, 3]
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy import ndimage

from render3d.cameras import Cameras, look_at

ROOM_HALF = 1.0
CUBE_HALF = 0.25
TEXTURE_SIZE = 256


def _face_texture(rng: np.random.Generator) -> np.ndarray:
    """``[TEXTURE_SIZE, TEXTURE_SIZE, 3]`` colours in [0, 1]: value noise under 300 sharp random rectangles (corners for SIFT)."""
    texture = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE, 3))
    for cells, amplitude in ((4, 0.5), (8, 0.3), (16, 0.2)):
        grid = rng.random((cells + 1, cells + 1, 3))
        texture += amplitude * ndimage.zoom(grid, (TEXTURE_SIZE / (cells + 1), TEXTURE_SIZE / (cells + 1), 1), order=1)[:TEXTURE_SIZE, :TEXTURE_SIZE]
    texture /= texture.max()
    for _ in range(300):
        (x, y), (w, h) = rng.integers(0, TEXTURE_SIZE, 2), rng.integers(3, 24, 2)
        texture[y:y + h, x:x + w] = rng.random(3)
    return texture


def _textures(seed: int) -> np.ndarray:
    """12 face textures: the room's 6 inner faces, then the cube's 6 outer faces (``-x, +x, -y, +y, -z, +z``)."""
    rng = np.random.default_rng(seed)
    return np.stack([_face_texture(rng) for _ in range(12)])


def _sample(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``texture [S, S, 3]`` at ``u, v`` in [0, 1]."""
    size = texture.shape[0] - 1
    x, y = np.clip(u, 0, 1) * size, np.clip(v, 0, 1) * size
    return np.stack([ndimage.map_coordinates(texture[..., c], [y, x], order=1) for c in range(3)], axis=-1)


def _shade(origins: np.ndarray, dirs: np.ndarray, textures: np.ndarray) -> np.ndarray:
    """Colours ``[R, 3]`` of rays ``origins, dirs [R, 3]`` started inside the room."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        # room: the nearest wall each ray leaves through
        t_room = np.where(dirs > 0, (ROOM_HALF - origins) * inv, (-ROOM_HALF - origins) * inv)
        t_room = np.where(np.isfinite(t_room), t_room, np.inf)
        axis = np.argmin(t_room, axis=1)
        t = t_room[np.arange(len(dirs)), axis]
        face = 2 * axis + (dirs[np.arange(len(dirs)), axis] > 0)
        # cube: slab test, entering face
        t0, t1 = (-CUBE_HALF - origins) * inv, (CUBE_HALF - origins) * inv
        near, far = np.minimum(t0, t1), np.maximum(t0, t1)
        near = np.where(np.isnan(near), -np.inf, near)
        far = np.where(np.isnan(far), np.inf, far)
        t_in, t_out = near.max(1), far.min(1)
    hit_cube = (t_in <= t_out) & (t_in > 0) & (t_in < t)
    cube_axis = np.argmax(near, axis=1)
    t = np.where(hit_cube, t_in, t)
    face = np.where(hit_cube, 6 + 2 * cube_axis + (dirs[np.arange(len(dirs)), cube_axis] < 0), face)
    axis = np.where(hit_cube, cube_axis, axis)
    points = origins + t[:, None] * dirs
    colors = np.zeros((len(dirs), 3))
    for f in range(12):
        sel = face == f
        if not sel.any():
            continue
        others = [a for a in range(3) if a != (f % 6) // 2]  # the same texels per world unit on every face
        u = (points[sel, others[0]] / ROOM_HALF + 1) / 2
        v = (points[sel, others[1]] / ROOM_HALF + 1) / 2
        colors[sel] = _sample(textures[f], u, v)
    return colors


def orbit_cameras(count: int, resolution: int, radius: float = 0.8, height: float = 0.4, jitter: float = 0.0,
                  seed: int = 0) -> Cameras:
    """``count`` cameras on a ring of ``radius`` inside the room, looking at the cube (60 degree field of view).

    ``jitter`` (world units) moves each camera and its look-at point randomly, like a hand-held path.
    """
    rng = np.random.default_rng(seed)
    focal = 0.5 * resolution / np.tan(np.radians(30.0))
    c2w = []
    for i in range(count):
        angle = 2 * np.pi * i / count
        eye = np.array([radius * np.cos(angle), radius * np.sin(angle), height]) + jitter * rng.standard_normal(3)
        target = jitter * rng.standard_normal(3)
        c2w.append(look_at(torch.tensor(eye), torch.tensor(target), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)))
    K = torch.tensor([[focal, 0, resolution / 2], [0, focal, resolution / 2], [0, 0, 1]], dtype=torch.float32)
    return Cameras(K=K.expand(count, 3, 3).clone(), c2w=torch.stack(c2w).float(), width=resolution, height=resolution)


def render_room(cameras: Cameras, seed: int = 0, supersample: int = 2, index: Optional[int] = None) -> np.ndarray:
    """Views of the room, uint8 ``[N, H, W, 3]`` (or ``[H, W, 3]`` for one ``index``), ``supersample``^2 rays per pixel."""
    textures = _textures(seed)
    indices = range(len(cameras.c2w)) if index is None else [index]
    s = supersample
    ys, xs = np.meshgrid((np.arange(cameras.height * s) + 0.5) / s, (np.arange(cameras.width * s) + 0.5) / s, indexing="ij")
    views = []
    for i in indices:
        K, c2w = cameras.K[i].double().numpy(), cameras.c2w[i].double().numpy()
        dirs = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], axis=-1).reshape(-1, 3) @ c2w[:3, :3].T
        rgb = _shade(np.broadcast_to(c2w[:3, 3], dirs.shape), dirs, textures)
        rgb = rgb.reshape(cameras.height, s, cameras.width, s, 3).mean(axis=(1, 3))
        views.append((rgb * 255 + 0.5).astype(np.uint8))
    return views[0] if index is not None else np.stack(views)
