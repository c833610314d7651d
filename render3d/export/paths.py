"""Camera paths: keyframe interpolation, orbit, spiral and dataset trajectories, and their JSON file.

All poses are camera-to-world in the OpenCV convention of :class:`render3d.cameras.Cameras`
(+x right, +y down, +z forward); rotations are unit quaternions (w, x, y, z) of the
camera-to-world rotation. The JSON file (shared with the viewer's path editor)::

    {
      "version": 1,
      "fps": 30, "seconds": 4, "smoothness": 0.5, "loop": false,
      "resolution": [640, 480],                     # optional: width, height
      "crop": [[-1, -1, -1], [1, 1, 1]],            # optional: world box [min, max]
      "background": [1, 1, 1],                      # optional: RGB in [0, 1]
      "keyframes": [
        {"position": [x, y, z], "rotation": [w, x, y, z], "fov": 50, "time": 0.0},
        {"c2w": [[r, r, r, x], [r, r, r, y], [r, r, r, z]], "fov": 50}
      ]
    }

``fov`` is the vertical field of view in degrees. ``time`` (seconds, all keyframes or none)
places keyframes in time; without it they are evenly spaced. ``smoothness`` blends piecewise
linear motion (0) with a Catmull-Rom spline (1); both pass through every keyframe.

:func:`load_path` checks every field and bounds the work a file can ask for: ``fps`` in
(0, 240], ``seconds`` in (0, 3600], at most 100,000 frames, each ``resolution`` side a whole
number in [1, 8192], camera positions within +-1e9 world units, and no NaN or infinite
number anywhere in the document.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from render3d.cameras import Cameras, intrinsics_matrix, look_at, qvec_to_rotmat
from render3d.datasets.checks import check_number, check_vector, check_whole, describe, non_finite_field
from render3d.datasets.io import first_line, is_file
from render3d.errors import Render3DError
from render3d.files import write_json
from render3d.limits import MAX_FPS, MAX_FRAMES, MAX_SECONDS
from render3d.limits import MAX_SIDE as MAX_RESOLUTION

PATH_VERSION = 1
Vec3 = tuple[float, float, float]

#: Narrowest vertical field of view a camera path may ask for, in degrees (narrower: an infinite focal length).
MIN_FOV_DEG = 0.01


# --------------------------------------------------------------------------- rotations


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z, w >= 0) of rotation matrices ``[..., 3, 3]``."""
    R = R.double()
    m = R.reshape(-1, 3, 3)
    out = torch.empty(m.shape[0], 4, dtype=torch.float64)
    for i, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = torch.sqrt(tr + 1.0) * 2
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = torch.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = torch.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = torch.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        qt = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in q])
        out[i] = qt * (1.0 if qt[0] >= 0 else -1.0)
    out = out / out.norm(dim=-1, keepdim=True)
    return out.reshape(*R.shape[:-2], 4)


def slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of unit quaternions ``[F, 4]`` at ``t [F]`` (shortest arc)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    t = t[:, None]
    small = sin < 1e-6
    w0 = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / sin.clamp_min(1e-12))
    w1 = torch.where(small, t, torch.sin(t * theta) / sin.clamp_min(1e-12))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- keyframes


@dataclass
class Keyframe:
    """One camera of a path: position, camera-to-world rotation (w, x, y, z), vertical FOV in degrees."""

    position: Vec3
    rotation: tuple[float, float, float, float]
    fov: float = 50.0
    time: Optional[float] = None

    @classmethod
    def from_c2w(cls, c2w: Tensor, fov: float = 50.0, time: Optional[float] = None) -> "Keyframe":
        q = rotmat_to_quat(c2w[:3, :3])
        return cls(tuple(float(v) for v in c2w[:3, 3]), tuple(float(v) for v in q), float(fov), time)  # type: ignore[arg-type]

    def c2w(self) -> Tensor:
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = qvec_to_rotmat(torch.tensor(self.rotation, dtype=torch.float64))
        m[:3, 3] = torch.tensor(self.position, dtype=torch.float64)
        return m


def _segment_params(n_keys: int, n_frames: int, loop: bool, times: Optional[Sequence[float]], seconds: float) -> Tensor:
    """The keyframe coordinate ``u`` (keyframe i at u = i) of every frame."""
    n_segments = n_keys if loop else n_keys - 1
    if times is None:
        if loop:
            return torch.arange(n_frames, dtype=torch.float64) * n_segments / n_frames
        return torch.linspace(0, n_segments, n_frames, dtype=torch.float64) if n_frames > 1 else torch.zeros(1, dtype=torch.float64)
    knots = list(times) + ([seconds] if loop else [])
    frame_times = np.linspace(0, knots[-1], n_frames, endpoint=not loop) if n_frames > 1 else np.zeros(1)
    return torch.from_numpy(np.interp(frame_times, knots, np.arange(len(knots), dtype=np.float64)))


def _neighbours(values: Tensor, index: Tensor, loop: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Values at keyframes i-1, i, i+1, i+2 (clamped, or wrapped for a loop)."""
    n = values.shape[0]
    idx = [index - 1, index, index + 1, index + 2]
    idx = [i % n if loop else i.clamp(0, n - 1) for i in idx]
    return tuple(values[i] for i in idx)  # type: ignore[return-value]


def catmull_rom(values: Tensor, u: Tensor, loop: bool = False) -> Tensor:
    """Uniform Catmull-Rom spline through ``values [K, D]`` at keyframe coordinates ``u [F]``."""
    n_segments = values.shape[0] if loop else values.shape[0] - 1
    index = u.floor().long().clamp(0, max(n_segments - 1, 0))
    t = (u - index)[:, None]
    p0, p1, p2, p3 = _neighbours(values, index, loop)
    m1, m2 = 0.5 * (p2 - p0), 0.5 * (p3 - p1)
    t2, t3 = t * t, t * t * t
    return (2 * t3 - 3 * t2 + 1) * p1 + (t3 - 2 * t2 + t) * m1 + (-2 * t3 + 3 * t2) * p2 + (t3 - t2) * m2


def _linear(values: Tensor, u: Tensor, loop: bool) -> Tensor:
    n_segments = values.shape[0] if loop else values.shape[0] - 1
    index = u.floor().long().clamp(0, max(n_segments - 1, 0))
    _, p1, p2, _ = _neighbours(values, index, loop)
    t = (u - index)[:, None]
    return (1 - t) * p1 + t * p2


def _aligned(quats: Tensor) -> Tensor:
    """Flip quaternion signs so consecutive keyframes lie on the same hemisphere."""
    out = quats.clone()
    for i in range(1, len(out)):
        if (out[i] * out[i - 1]).sum() < 0:
            out[i] = -out[i]
    return out


def interpolate_keyframes(
    keyframes: Sequence[Keyframe], n_frames: int, smoothness: float = 0.5, loop: bool = False,
    seconds: Optional[float] = None,
) -> tuple[Tensor, Tensor]:
    """Camera-to-world matrices ``[F, 4, 4]`` and vertical FOVs in degrees ``[F]`` along the keyframes.

    Positions and FOV blend linear and Catmull-Rom interpolation by ``smoothness``;
    rotations blend slerp and a Catmull-Rom spline on sign-aligned quaternions. Every
    keyframe is reached exactly at its time.
    """
    if not keyframes:
        raise Render3DError("a camera path needs at least one keyframe")
    if len(keyframes) == 1:
        c2w = keyframes[0].c2w()[None].expand(n_frames, 4, 4).clone()
        return c2w, torch.full((n_frames,), float(keyframes[0].fov), dtype=torch.float64)
    times = [k.time for k in keyframes]
    use_times = None if any(t is None for t in times) else times
    total = seconds if seconds is not None else (times[-1] if use_times else 1.0)
    u = _segment_params(len(keyframes), n_frames, loop, use_times, float(total or 0.0))
    s = float(min(max(smoothness, 0.0), 1.0))
    pos = torch.tensor([k.position for k in keyframes], dtype=torch.float64)
    fov = torch.tensor([[k.fov] for k in keyframes], dtype=torch.float64)
    quats = _aligned(torch.tensor([k.rotation for k in keyframes], dtype=torch.float64))
    quats = quats / quats.norm(dim=-1, keepdim=True)
    blend = lambda v: (1 - s) * _linear(v, u, loop) + s * catmull_rom(v, u, loop)  # noqa: E731
    n_segments = len(keyframes) if loop else len(keyframes) - 1
    index = u.floor().long().clamp(0, n_segments - 1)
    _, q1, q2, _ = _neighbours(quats, index, loop)
    q = (1 - s) * slerp(q1, q2, u - index) + s * catmull_rom(quats, u, loop)
    q = q / q.norm(dim=-1, keepdim=True)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n_frames, 1, 1)
    c2w[:, :3, :3] = qvec_to_rotmat(q)
    c2w[:, :3, 3] = blend(pos)
    return c2w, blend(fov)[:, 0]


# --------------------------------------------------------------------------- the path file


@dataclass
class CameraPath:
    """A keyframed camera path with its render settings (the JSON file's contents)."""

    keyframes: list[Keyframe]
    fps: float = 30.0
    seconds: float = 4.0
    smoothness: float = 0.5
    loop: bool = False
    resolution: Optional[tuple[int, int]] = None
    crop: Optional[tuple[Vec3, Vec3]] = None
    background: Optional[Vec3] = None
    source: Optional[str] = field(default=None, compare=False)

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.fps * self.seconds)))

    def poses(self) -> tuple[Tensor, Tensor]:
        """Camera-to-world ``[F, 4, 4]`` and vertical FOV in degrees ``[F]`` of every frame."""
        return interpolate_keyframes(self.keyframes, self.num_frames, self.smoothness, self.loop, self.seconds)

    def cameras(self, width: int, height: int) -> Cameras:
        """The frames as :class:`Cameras` of ``width`` x ``height`` pixels."""
        c2w, fov = self.poses()
        return cameras_from_poses(c2w, fov, width, height)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": PATH_VERSION, "fps": self.fps, "seconds": self.seconds,
            "smoothness": self.smoothness, "loop": self.loop,
            "keyframes": [
                {"position": list(k.position), "rotation": list(k.rotation), "fov": k.fov, **({"time": k.time} if k.time is not None else {})}
                for k in self.keyframes
            ],
        }
        if self.resolution is not None:
            data["resolution"] = list(self.resolution)
        if self.crop is not None:
            data["crop"] = [list(self.crop[0]), list(self.crop[1])]
        if self.background is not None:
            data["background"] = list(self.background)
        return data


def cameras_from_poses(c2w: Tensor, fov_y_deg: Tensor, width: int, height: int) -> Cameras:
    """Pinhole cameras with principal point at the image centre and the given vertical FOVs."""
    fy = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fov_y_deg.double()))
    K = torch.stack([intrinsics_matrix(float(f), float(f), 0.5 * width, 0.5 * height) for f in fy])
    return Cameras(K, c2w.float(), width, height)


def save_path(path: CameraPath, file: Union[str, os.PathLike]) -> Path:
    """Write ``path`` as JSON, atomically (an interrupted or failed save keeps the old file)."""
    return write_json(path.to_dict(), file)


#: Largest camera-position coordinate (world units) a path file may use.
MAX_COORDINATE = 1e9


class _Reader:
    """Validates one JSON document field by field, with one-line errors naming the file."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.prefix = f"bad camera path {file}"

    def fail(self, where: str, what: str) -> Render3DError:
        return Render3DError(f"{self.prefix}: {where} {what}")

    def number(self, value: Any, where: str, positive: bool = False, high: Optional[float] = None) -> float:
        """A finite number (positive, at most ``high`` when asked), else a one-line error naming ``where``."""
        return check_number(value, where, self.prefix, low=0 if positive else None, low_open=positive, high=high)

    def vector(self, value: Any, where: str, size: int) -> tuple[float, ...]:
        return check_vector(value, size, where, self.prefix)

    def position(self, value: Any, where: str) -> tuple[float, ...]:
        """A camera position: three numbers within +-MAX_COORDINATE (splines and float32 stay finite)."""
        xyz = self.vector(value, where, 3)
        for i, v in enumerate(xyz):
            check_number(v, f"{where}[{i}]", self.prefix, low=-MAX_COORDINATE, high=MAX_COORDINATE)
        return xyz

    def keyframe(self, item: Any, where: str) -> Keyframe:
        if not isinstance(item, dict):
            raise self.fail(where, "must be an object with position and rotation (or c2w)")
        fov = self.number(item.get("fov", 50.0), f"{where}.fov", positive=True)
        if not MIN_FOV_DEG <= fov < 180:
            raise self.fail(f"{where}.fov", f"must be between {MIN_FOV_DEG} and 180 degrees, got {fov}")
        time = self.number(item["time"], f"{where}.time") if item.get("time") is not None else None
        if "c2w" in item:
            rows = item["c2w"]
            if not isinstance(rows, list) or len(rows) not in (3, 4):
                raise self.fail(f"{where}.c2w", "must be a 3x4 or 4x4 matrix (list of rows)")
            m = torch.tensor([self.vector(r, f"{where}.c2w[{i}]", 4) for i, r in enumerate(rows[:3])], dtype=torch.float64)
            self.position(m[:, 3].tolist(), f"{where}.c2w translation")
            R = m[:, :3]
            if abs(float(torch.linalg.det(R)) - 1) > 1e-3 or not torch.allclose(R.T @ R, torch.eye(3, dtype=torch.float64), atol=1e-3):
                raise self.fail(f"{where}.c2w", "does not hold a rotation (orthonormal, determinant 1)")
            c2w = torch.eye(4, dtype=torch.float64)
            c2w[:3] = m
            return Keyframe.from_c2w(c2w, fov, time)
        if "position" not in item or "rotation" not in item:
            raise self.fail(where, "needs position and rotation (w, x, y, z), or c2w")
        position = self.position(item["position"], f"{where}.position")
        rotation = self.vector(item["rotation"], f"{where}.rotation", 4)
        norm = math.sqrt(sum(v * v for v in rotation))
        if math.isinf(norm):  # the squares overflowed (values near 1e200): scale down first
            largest = max(abs(v) for v in rotation)
            rotation = tuple(v / largest for v in rotation)
            norm = math.sqrt(sum(v * v for v in rotation))
        if norm < 1e-8:
            raise self.fail(f"{where}.rotation", "is a zero quaternion")
        return Keyframe(position, tuple(v / norm for v in rotation), fov, time)  # type: ignore[arg-type]

    def path(self, data: Any) -> CameraPath:
        if not isinstance(data, dict):
            raise self.fail("the document", "must be a JSON object with a keyframes list")
        bad = non_finite_field(data)
        if bad is not None:
            raise self.fail(bad, "is NaN or infinite; use a finite number")
        version = data.get("version", PATH_VERSION)
        if version != PATH_VERSION:
            raise self.fail("version", f"{version!r} is not supported (this render3d reads version {PATH_VERSION})")
        items = data.get("keyframes")
        if not isinstance(items, list) or not items:
            raise self.fail("keyframes", "must be a non-empty list")
        keys = [self.keyframe(item, f"keyframes[{i}]") for i, item in enumerate(items)]
        timed = [k.time is not None for k in keys]
        if any(timed) and not all(timed):
            raise self.fail("keyframes", "give a time to every keyframe or to none")
        if all(timed) and any(b.time <= a.time for a, b in zip(keys, keys[1:])):  # type: ignore[operator]
            raise self.fail("keyframes", "times must increase")
        path = CameraPath(keys, source=str(self.file))
        path.fps = self.number(data.get("fps", path.fps), "fps", positive=True, high=MAX_FPS)
        default_seconds = keys[-1].time if all(timed) and keys[-1].time else path.seconds
        path.seconds = self.number(data.get("seconds", default_seconds), "seconds", positive=True, high=MAX_SECONDS)
        if path.fps * path.seconds > MAX_FRAMES:
            raise self.fail(
                "fps x seconds", f"gives {round(path.fps * path.seconds)} frames, more than {MAX_FRAMES}; lower fps or seconds"
            )
        path.smoothness = self.number(data.get("smoothness", path.smoothness), "smoothness")
        if not 0 <= path.smoothness <= 1:
            raise self.fail("smoothness", f"must be between 0 and 1, got {path.smoothness}")
        loop = data.get("loop", False)
        if not isinstance(loop, bool):
            raise self.fail("loop", f"must be true or false, got {loop!r}")
        path.loop = loop
        if data.get("resolution") is not None:
            size = data["resolution"]
            if not isinstance(size, list) or len(size) != 2:
                raise self.fail("resolution", f"must be [width, height], got {describe(size)}")
            path.resolution = tuple(  # type: ignore[assignment]
                check_whole(v, f"resolution[{i}]", self.prefix, low=1, high=MAX_RESOLUTION) for i, v in enumerate(size)
            )
        if data.get("crop") is not None:
            crop = data["crop"]
            if isinstance(crop, dict):
                crop = [crop.get("min"), crop.get("max")]
            if not isinstance(crop, list) or len(crop) != 2:
                raise self.fail("crop", "must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
            lo, hi = self.vector(crop[0], "crop[0]", 3), self.vector(crop[1], "crop[1]", 3)
            if any(a >= b for a, b in zip(lo, hi)):
                raise self.fail("crop", f"min {list(lo)} must be below max {list(hi)} on every axis")
            path.crop = (lo, hi)  # type: ignore[assignment]
        if data.get("background") is not None:
            bg = self.vector(data["background"], "background", 3)
            if any(not 0 <= v <= 1 for v in bg):
                raise self.fail("background", f"must be RGB in [0, 1], got {list(bg)}")
            path.background = bg  # type: ignore[assignment]
        return path


def load_path(file: Union[str, os.PathLike]) -> CameraPath:
    """Read and validate a camera-path JSON file; any problem is a one-line :class:`Render3DError`."""
    file = Path(file)
    if not is_file(file):
        raise Render3DError(f"no camera path file at {file}: pass orbit, spiral, interpolate, dataset or a .json path")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Render3DError(f"cannot read camera path {file} ({exc.strerror or exc}); check the file and its permissions") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, a too-long integer, deep nesting
        raise Render3DError(f"bad camera path {file}: not valid JSON ({first_line(exc)})") from None
    return _Reader(file).path(data)


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
