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

from render3d.cameras import Cameras, intrinsics_matrix, look_at
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


@dataclass(frozen=True)
class OpeningView:
    """Where a browser's camera starts: ``position`` looking at ``look_at`` with ``up``, vertical ``fov`` (radians)."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    up: tuple[float, float, float]
    fov: float

    def pose(self, aspect: float) -> CameraPose:
        """This view as a :class:`CameraPose` for a canvas of ``aspect`` (width / height)."""
        c2w = look_at(*(torch.tensor(v, dtype=torch.float64) for v in (self.position, self.look_at, self.up)))
        return CameraPose.from_c2w(c2w, self.fov, aspect)

    def matches(self, pose: CameraPose) -> bool:
        """Whether a browser's ``pose`` stands where this view does (to 0.1% of the viewing distance)."""
        distance = float(np.linalg.norm(np.subtract(self.position, self.look_at)))
        return float(np.linalg.norm(np.subtract(pose.position, self.position))) <= 1e-3 * max(distance, 1e-9)


# the opening view stands this much farther from the scene than the farthest training camera
OUTSIDE_CAMERAS = 1.5
# and, around an inward-facing capture, this far around the up axis from the first camera
AROUND_DEGREES = 20.0


def opening_view(cameras: Cameras, bounds: torch.Tensor) -> OpeningView:
    """Where the viewer opens: outside the training cameras when the scene lies within them, else camera 0.

    Both look at the point the cameras look at (:func:`render3d.camera_paths.framing.scene_frame`).

    - Every camera outside the content ``bounds`` (an object captured all around, as in
      NeRF-synthetic, or a forward-facing capture in front of its rig): from
      ``OUTSIDE_CAMERAS`` times the farthest camera's distance, behind the rig of a
      forward-facing capture (along the mean camera offset) or, for captures all around
      the scene, beside camera 0 about ``AROUND_DEGREES`` around the up axis, turned to
      where no camera's frustum sits in the middle of the view.
    - Cameras inside the content (a room or garden captured from within): any view from
      outside them would look through the surroundings, so the first training camera's view
      and field of view, stepped forward past the frustums of its neighbours (three frustum
      sizes, :func:`frustum_scale`), which would otherwise fill the picture.
    """
    from render3d.datasets.geometry import looks_forward_facing
    from render3d.camera_paths.framing import scene_frame

    frame = scene_frame(cameras, bounds)
    center, up = frame.center.numpy(), frame.up.numpy()
    positions = cameras.c2w[:, :3, 3].double().numpy()
    lo, hi = bounds[0].double().numpy(), bounds[1].double().numpy()
    as_tuple = lambda v: tuple(float(x) for x in v)  # noqa: E731
    if (((positions >= lo) & (positions <= hi)).all(axis=1)).any():
        forward = cameras.c2w[0, :3, 2].double().numpy()
        distance = max(float(np.linalg.norm(center - positions[0])), 1e-6)
        eye = positions[0] + min(3.0 * frustum_scale(cameras), 0.5 * distance) * forward
        return OpeningView(as_tuple(eye), as_tuple(positions[0] + distance * forward), as_tuple(up), pose_of(cameras, 0).fov)
    offsets = positions - center
    reach = OUTSIDE_CAMERAS * max(float(np.linalg.norm(offsets, axis=1).max()), 1e-6)
    if looks_forward_facing(cameras.c2w.double().numpy()):
        position = center + reach * _unit(offsets.mean(0), -cameras.c2w[0, :3, 2].double().numpy())
    else:
        position = _clear_view_around(center, up, reach * _unit(offsets[0], up), positions)
    return OpeningView(as_tuple(position), as_tuple(center), as_tuple(up), float(np.radians(frame.fov_deg)))


def opening_view_of_bounds(bounds: torch.Tensor) -> OpeningView:
    """For content without cameras (a .ply, a .splat): the first view of ``render3d render``'s orbit around
    ``bounds`` (:func:`render3d.camera_paths.framing.frame_from_bounds`: -y up, the COLMAP world of most 3DGS files)."""
    from render3d.camera_paths.framing import frame_from_bounds, orbit_poses

    frame = frame_from_bounds(bounds)
    eye = orbit_poses(frame, 1)[0, :3, 3]
    as_tuple = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return OpeningView(as_tuple(eye), as_tuple(frame.center), as_tuple(frame.up), math.radians(frame.fov_deg))


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-9 else fallback


def _clear_view_around(center: np.ndarray, up: np.ndarray, offset: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """An eye at ``center + offset`` turned about ``up`` so that no camera sits near the middle of the view.

    Turns by 5 degree steps; of the turns whose nearest camera is at least 80% as far from the
    line of sight (in angle) as the best turn's, the one closest to ``AROUND_DEGREES``.
    """
    turns = np.arange(-180.0, 180.0, 5.0)
    eyes = np.stack([center + vtf.SO3.exp(up * np.radians(t)) @ offset for t in turns])  # [T, 3]
    sight = center - eyes
    to_cams = cameras[None] - eyes[:, None]  # [T, N, 3]
    cos = np.einsum("tnk,tk->tn", to_cams, sight) / (np.linalg.norm(to_cams, axis=-1) * np.linalg.norm(sight, axis=-1)[:, None] + 1e-12)
    clearance = np.arccos(np.clip(cos, -1.0, 1.0)).min(axis=1)  # angle of the camera nearest the line of sight
    good = clearance >= 0.8 * clearance.max()
    return eyes[np.argmin(np.where(good, np.abs(turns - AROUND_DEGREES), np.inf))]


def frustum_scale(cameras: Cameras) -> float:
    """Size of the training-camera frustums drawn in the viewer, from the camera spacing.

    A fifth of the median distance between neighbouring cameras (so neighbours do not
    overlap), and at most 4% of the median camera distance to the scene (so a few cameras
    far apart do not hide it).
    """
    from render3d.camera_paths.framing import scene_frame

    centers = cameras.c2w[:, :3, 3].double()
    if len(centers) < 2:
        return 0.04 * max(scene_frame(cameras).radius, 1e-6)
    gaps = torch.cdist(centers, centers)
    gaps.fill_diagonal_(float("inf"))
    spacing = float(gaps.min(dim=1).values.median())
    return max(min(0.2 * spacing, 0.04 * scene_frame(cameras).radius), 1e-6)
