"""Conversions between a browser's viser camera and :class:`render3d.cameras.Cameras`.

viser reports each browser's camera as camera-to-world ``wxyz`` + ``position`` in the
OpenCV convention (+z forward, +y down) with a vertical ``fov`` in radians and the canvas
``aspect`` (width / height) -- the same convention as ``Cameras``, so only the intrinsics
have to be built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import viser.transforms as vtf

from render3d.cameras import Cameras, intrinsics_matrix
from render3d.errors import Render3DError

# A browser reports its camera; these bound what the viewer renders from it.
FOV_RANGE = (math.radians(1.0), math.radians(179.0))
ASPECT_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class CameraPose:
    """One view: camera-to-world rotation ``wxyz``, ``position``, vertical ``fov`` (radians), ``aspect``."""

    wxyz: tuple[float, float, float, float]
    position: tuple[float, float, float]
    fov: float
    aspect: float

    @classmethod
    def from_handle(cls, camera: object) -> "CameraPose":
        """Snapshot a viser ``CameraHandle`` (``client.camera``).

        The values come from a browser: ``fov`` and ``aspect`` are clamped to
        :data:`FOV_RANGE` and :data:`ASPECT_RANGE`.

        Raises:
            Render3DError: the pose is malformed or not finite.
        """
        try:
            wxyz = tuple(float(v) for v in camera.wxyz)  # type: ignore[attr-defined]
            position = tuple(float(v) for v in camera.position)  # type: ignore[attr-defined]
            fov, aspect = float(camera.fov), float(camera.aspect)  # type: ignore[attr-defined]
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise Render3DError(f"the browser sent an unusable camera ({exc})") from None
        values = (*wxyz, *position, fov, aspect)
        if len(wxyz) != 4 or len(position) != 3 or not all(math.isfinite(v) for v in values) or not any(wxyz):
            raise Render3DError("the browser sent an unusable camera (not a finite pose)")
        fov = min(max(fov, FOV_RANGE[0]), FOV_RANGE[1])
        aspect = min(max(aspect, ASPECT_RANGE[0]), ASPECT_RANGE[1])
        return cls(wxyz, position, fov, aspect)  # type: ignore[arg-type]

    @classmethod
    def from_c2w(cls, c2w: torch.Tensor, fov: float, aspect: float) -> "CameraPose":
        """From an OpenCV camera-to-world ``[4, 4]`` (or ``[3, 4]``) matrix."""
        m = c2w.detach().cpu().double().numpy()
        wxyz = vtf.SO3.from_matrix(m[:3, :3]).wxyz
        return cls(tuple(float(v) for v in wxyz), tuple(float(v) for v in m[:3, 3]), float(fov), float(aspect))

    def c2w(self) -> torch.Tensor:
        """Camera-to-world ``[4, 4]`` float32."""
        out = np.eye(4)
        out[:3, :3] = vtf.SO3(np.asarray(self.wxyz)).as_matrix()
        out[:3, 3] = self.position
        return torch.from_numpy(out).float()

    def size_for(self, max_side: int) -> tuple[int, int]:
        """Image ``(width, height)`` with the longer side ``max_side`` at this aspect."""
        aspect = max(self.aspect, 1e-3)
        if aspect >= 1.0:
            return max_side, max(1, round(max_side / aspect))
        return max(1, round(max_side * aspect)), max_side

    def cameras(self, max_side: int) -> Cameras:
        """A one-camera batch rendering this view with its longer side ``max_side`` pixels."""
        width, height = self.size_for(max_side)
        fy = 0.5 * height / math.tan(0.5 * self.fov)
        return Cameras(intrinsics_matrix(fy, fy, width / 2.0, height / 2.0), self.c2w(), width, height)


def camera_fov_aspect(cameras: Cameras, index: int = 0) -> tuple[float, float]:
    """Vertical field of view (radians) and aspect ratio of camera ``index``."""
    return float(cameras.fov_y()[index]), cameras.width / cameras.height


def pose_of(cameras: Cameras, index: int = 0) -> CameraPose:
    """The :class:`CameraPose` of camera ``index`` of a batch."""
    fov, aspect = camera_fov_aspect(cameras, index)
    return CameraPose.from_c2w(cameras.c2w[index], fov, aspect)


def world_up(cameras: Cameras) -> np.ndarray:
    """The average "up" (-y in OpenCV) of a camera rig, normalised: the viewer's up direction."""
    up = -cameras.c2w[:, :3, 1].double().mean(0).numpy()
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
