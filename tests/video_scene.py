"""A tiny, fast scene for video tests: coloured boxes on a flat wall, seen by a camera sliding in front of it.

The wall is the plane ``z = DEPTH`` (OpenCV cameras look along +z); a camera translated by
``(x, y, 0)`` sees the wall shifted, so a clip's motion is a 2D pan whose direction follows
the camera path. Rendering is a texture lookup per pixel: thousands of frames per second.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras, intrinsics_matrix
from render3d.protocol import RenderOutput
from render3d.video.clips import ClipSet, ClipSplit

DEPTH = 2.0
FOV_DEG = 50.0


class BoxesScene:
    """Random axis-aligned coloured boxes on a wall with smooth colour gradients (a :class:`~render3d.protocol.SceneModel`)."""

    def __init__(self, boxes: int = 16, extent: float = 2.5, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.lo = torch.from_numpy(rng.uniform(-extent, extent, (boxes, 2))).float()
        self.hi = self.lo + torch.from_numpy(rng.uniform(1.0, 2.0, (boxes, 2))).float()
        self.color = torch.from_numpy(rng.uniform(0.0, 1.0, (boxes, 3))).float()
        self.background = torch.tensor([0.5, 0.5, 0.5])

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        ys, xs = torch.meshgrid(torch.arange(cameras.height) + 0.5, torch.arange(cameras.width) + 0.5, indexing="ij")
        K, c2w = cameras.K.float(), cameras.c2w.float()
        cam = torch.stack([(xs - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None],
                           (ys - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None], torch.ones(len(K), *xs.shape)], -1)
        d = torch.einsum("nij,nhwj->nhwi", c2w[:, :3, :3], cam)  # [N, H, W, 3]
        o = c2w[:, None, None, :3, 3]
        p = (o + (DEPTH - o[..., 2:3]) / d[..., 2:3] * d)[..., :2]  # where each ray meets the wall
        inside = ((p[..., None, :] >= self.lo) & (p[..., None, :] <= self.hi)).all(-1)  # [N, H, W, boxes]
        last = torch.where(inside.any(-1), (inside.float() * torch.arange(1, len(self.lo) + 1)).argmax(-1), -1)
        wall = 0.5 + 0.25 * torch.stack([torch.sin(1.3 * p[..., 0]), torch.cos(1.1 * p[..., 1]), torch.sin(0.9 * (p[..., 0] + p[..., 1]))], -1)
        rgb = torch.where((last >= 0)[..., None], self.color[last.clamp(min=0)], wall)
        ones = torch.ones(*rgb.shape[:-1], 1)
        return RenderOutput(rgb, ones * DEPTH, ones)


def pan_cameras(size: int, frames: int, velocity: tuple[float, float], start: tuple[float, float] = (0.0, 0.0)) -> Cameras:
    """Cameras sliding by ``velocity`` (world units per frame) from ``start``, looking at the wall."""
    f = 0.5 * size / math.tan(math.radians(FOV_DEG) / 2)
    c2w = torch.eye(4).repeat(frames, 1, 1)
    steps = torch.arange(frames, dtype=torch.float32)
    c2w[:, 0, 3] = start[0] + velocity[0] * steps
    c2w[:, 1, 3] = start[1] + velocity[1] * steps
    return Cameras(intrinsics_matrix(f, f, size / 2, size / 2), c2w, size, size)


def render_clip(scene: BoxesScene, cams: Cameras) -> Tensor:
    """uint8 frames ``[T, H, W, 3]``."""
    rgb = scene.render(cams).rgb
    return (rgb * 255 + 0.5).to(torch.uint8)


def boxes_clips(n_train: int = 64, n_test: int = 8, frames: int = 9, size: int = 32, speed: float = 0.12, seed: int = 0) -> ClipSet:
    """Clips panning left or right (and a little up or down) from random start points."""
    scene = BoxesScene()
    rng = np.random.default_rng(seed)

    def split(n: int) -> ClipSplit:
        clips, c2ws, Ks = [], [], []
        for _ in range(n):
            velocity = (float(rng.choice([-1.0, 1.0])) * speed, float(rng.uniform(-0.3, 0.3)) * speed)
            cams = pan_cameras(size, frames, velocity, tuple(rng.uniform(-1.5, 1.5, 2)))
            clips.append(render_clip(scene, cams))
            c2ws.append(cams.c2w)
            Ks.append(cams.K)
        return ClipSplit(torch.stack(clips), torch.stack(c2ws), torch.stack(Ks))

    meta = {"source": "boxes", "kind": "scene", "fps": 8.0, "pose_scale": 1.0,
            "scene_frame": {"center": [0.0, 0.0, DEPTH], "up": [0.0, -1.0, 0.0], "radius": DEPTH, "elevation_deg": 0.0, "fov_deg": FOV_DEG}}
    return ClipSet(split(n_train), split(n_test), meta)
