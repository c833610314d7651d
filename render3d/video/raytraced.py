"""The bundled default scene as a :class:`~render3d.protocol.SceneModel`: its own ground-truth ray tracer.

:mod:`render3d.datasets.synthetic` ray-traces the procedural still life analytically from
any camera, so clips of "the default scene" need no trained 3D model and their frames are
exact (anti-aliased with the generator's subpixel samples), composited on a white background
like the scene's training images.
"""

from __future__ import annotations

import torch

from render3d.camera_paths.framing import SceneFrame
from render3d.cameras import Cameras
from render3d.protocol import RenderOutput


class RayTracedScene:
    """Renders the default scene with :func:`render3d.datasets.synthetic.render_view` (CPU, one thread)."""

    def __init__(self, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        from render3d.datasets.synthetic import _Scene, load_description

        self._scene = _Scene.parse(load_description())
        self.background = torch.tensor(background, dtype=torch.float32)

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """RGB composited on :attr:`background`, z-depth and coverage of every camera."""
        from render3d.datasets.synthetic import render_view
        from render3d.runtime import torch_threads

        rgbs, depths, alphas = [], [], []
        cameras = cameras.to("cpu")
        with torch.inference_mode(), torch_threads(1):
            for i in range(len(cameras)):
                rgba, depth, _mask = render_view(cameras, i, self._scene)
                rgba_t = torch.from_numpy(rgba).float() / 255.0
                alpha = rgba_t[..., 3:]
                rgbs.append(rgba_t[..., :3] * alpha + self.background * (1 - alpha))
                depths.append(torch.from_numpy(depth)[..., None])
                alphas.append(alpha)
        return RenderOutput(torch.stack(rgbs), torch.stack(depths), torch.stack(alphas))

    @staticmethod
    def scene_frame() -> SceneFrame:
        """Where the generator's cameras are: around the centre of the scene bounds, z up (square images)."""
        from render3d.datasets import synthetic as syn

        bounds = syn.scene_bounds().double()
        elevation = 0.5 * sum(syn.ELEVATION_RANGE_DEG)
        return SceneFrame(0.5 * (bounds[0] + bounds[1]), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                          syn.CAMERA_RADIUS, elevation, syn.FOV_X_DEG)

    @staticmethod
    def elevation_range() -> tuple[float, float]:
        from render3d.datasets.synthetic import ELEVATION_RANGE_DEG

        return ELEVATION_RANGE_DEG

