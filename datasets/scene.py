"""``SceneData``: what every dataset loader returns and every trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from render3d.cameras import Cameras


@dataclass
class Split:
    """Images and cameras of one split (train, val or test).

    Attributes:
        images: ``[N, H, W, 3]`` uint8 RGB, already composited on the scene background
            when the source had alpha.
        cameras: one camera per image, OpenCV convention.
        names: image file names (for reports and error messages).
        alpha: optional ``[N, H, W, 1]`` uint8 coverage from an RGBA source.
        depths: optional ``[N, H, W]`` float32 z-depth along the camera axis (0 = background).
        masks: optional ``[N, H, W]`` bool, True where the pixel is valid / the object.
    """

    images: Tensor
    cameras: Cameras
    names: list[str] = field(default_factory=list)
    alpha: Optional[Tensor] = None
    depths: Optional[Tensor] = None
    masks: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image_float(self, index: int, device: torch.device | str = "cpu") -> Tensor:
        """Image ``index`` as float32 ``[H, W, 3]`` in [0, 1] on ``device``."""
        return self.images[index].to(device).float() / 255.0


@dataclass
class SceneData:
    """A posed-image scene, independent of its on-disk format.

    Attributes:
        train, val, test: the splits (val or test may be empty: ``len(split) == 0``).
        points: optional sparse points ``[P, 3]`` (e.g. from COLMAP) for initialising Gaussians.
        point_colors: optional ``[P, 3]`` uint8 colours of ``points``.
        bounds: ``[2, 3]`` axis-aligned box (min, max) that holds the scene content.
        near_far: typical ray range (near, far) for NeRF samplers.
        background: ``[3]`` float RGB that transparent pixels were composited on.
        forward_facing: True for LLFF-style captures (all cameras look the same way).
        format: the loader that produced it ("blender", "nerfstudio", "colmap", "llff", "synthetic").
        root: the folder it came from.
    """

    train: Split
    val: Split
    test: Split
    bounds: Tensor
    near_far: tuple[float, float]
    background: Tensor = field(default_factory=lambda: torch.ones(3))
    points: Optional[Tensor] = None
    point_colors: Optional[Tensor] = None
    forward_facing: bool = False
    format: str = "unknown"
    root: Optional[Path] = None

    def split(self, name: str) -> Split:
        """The split called ``name`` ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    @property
    def scene_scale(self) -> float:
        """Radius of the camera rig around its centre (3DGS's ``scene_scale``), at least 1e-3."""
        centers = self.train.cameras.centers
        radius = (centers - centers.mean(0)).norm(dim=-1).max().item() * 1.1
        return max(radius, 1e-3)

    def summary(self) -> str:
        """A few human-readable lines describing the scene (used by ``render3d info``)."""
        cams = self.train.cameras
        lines = [
            f"format       {self.format}",
            f"root         {self.root}",
            f"images       train {len(self.train)}, val {len(self.val)}, test {len(self.test)}",
            f"resolution   {cams.width} x {cams.height}",
            f"focal (px)   fx {cams.K[0, 0, 0].item():.1f}, fy {cams.K[0, 1, 1].item():.1f}",
            f"bounds       min {[round(v, 3) for v in self.bounds[0].tolist()]}, max {[round(v, 3) for v in self.bounds[1].tolist()]}",
            f"near / far   {self.near_far[0]:.3f} / {self.near_far[1]:.3f}",
            f"points       {0 if self.points is None else len(self.points)}",
            f"background   {[round(v, 3) for v in self.background.tolist()]}",
            f"alpha        {'yes' if self.train.alpha is not None else 'no'}, depth {'yes' if self.train.depths is not None else 'no'}",
            f"layout       {'forward-facing' if self.forward_facing else 'inward / object-centric'}",
        ]
        return "\n".join(lines)
