"""The contract every scene model implements, and what it returns.

The viewer, exporters and eval use only :class:`SceneModel.render`, so a new method
needs no change outside its own folder and the method registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from torch import Tensor

from render3d.cameras import Cameras

RENDER_MODES = ("rgb", "depth", "alpha", "normal")


@dataclass
class RenderOutput:
    """Images of ``C`` cameras.

    Attributes:
        rgb: ``[C, H, W, 3]`` in [0, 1], composited on the model's background.
        depth: ``[C, H, W, 1]`` expected z-depth along the camera axis (0 where empty).
        alpha: ``[C, H, W, 1]`` accumulated opacity.
        extras: method-specific outputs (e.g. ``normal``).
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class SceneModel(Protocol):
    """A trained (or training) scene that can be rendered from any camera."""

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """Render ``cameras``; ``mode`` names what the caller needs most (rgb, depth, alpha, normal)."""
        ...


# Optional hooks a model may add (the exporters look for them, never for a method's type):
#   extract_mesh(resolution: int) -> trimesh.Trimesh   its own mesh route (NeRF: density + marching cubes);
#                                                      without it, meshes come from TSDF fusion of rendered depth.
