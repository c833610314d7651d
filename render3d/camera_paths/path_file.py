"""The camera-path JSON file: :class:`CameraPath`, :func:`load_path` (with its checks) and :func:`save_path`.

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
from typing import Any, Optional, Union

import torch
from torch import Tensor

from render3d.camera_paths.interpolation import Keyframe, Vec3, cameras_from_poses, interpolate_keyframes
from render3d.cameras import Cameras
from render3d.datasets.checks import check_number, check_vector, check_whole, describe, non_finite_field
from render3d.datasets.io import first_line, is_file
from render3d.errors import Render3DError
from render3d.files import write_json
from render3d.limits import MAX_FPS, MAX_FRAMES, MAX_SECONDS
from render3d.limits import MAX_SIDE as MAX_RESOLUTION

PATH_VERSION = 1

#: Narrowest vertical field of view a camera path may ask for, in degrees (narrower: an infinite focal length).
MIN_FOV_DEG = 0.01


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
