"""The NeRF ``transforms*.json`` family, shared by the Blender and nerfstudio loaders.

One json holds optional top-level camera keys and a ``frames`` list; every frame may
override any camera key. Keys read (all optional except a focal length and the pose):

``fl_x``, ``fl_y``
    focal lengths in pixels; ``camera_angle_x`` / ``camera_angle_y`` (radians, full
    field of view) when absent; ``fl_y`` defaults to ``fl_x``.
``cx``, ``cy``, ``w``, ``h``
    principal point and the image size they refer to; default: the image centre and the
    image file's own size.
``k1``, ``k2``, ``p1``, ``p2``
    OpenCV distortion (``k3``, ``k4`` are ignored with a warning).
``camera_model``
    ``OPENCV`` or ``PINHOLE`` (or absent); fisheye / equirectangular are refused.
``transform_matrix``
    4x4 (or 3x4) camera-to-world in the OpenGL / Blender convention (+y up, -z forward),
    converted here to OpenCV.
``file_path``
    image path relative to the json's folder, with or without extension (``.png`` is
    tried first, then the other image extensions). For a downscale N, an image
    ``images/NAME`` is read from ``images_N/NAME`` when that file exists.
``depth_file_path`` (or ``depth_path``), ``depth_scale``
    optional z-depth map (``.npy`` float, or 16-bit PNG) with
    ``depth = stored value / depth_scale`` (default ``depth_scale`` 1: the stored values
    are world units; e.g. 1000 for a PNG in millimetres of a metre-scale scene). Zero
    means no depth.
``mask_file_path`` (or ``mask_path``)
    optional mask image, True where the value is above half.
``near``, ``far`` (top level)
    optional ray range; estimated from the cameras when absent.
``aabb`` (top level)
    optional scene box ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``.

Every value read is checked: a wrong type, NaN, infinity or an impossible value (a zero
focal length or image size, a field of view of 180 degrees or more) is a one-line
Render3DError naming the file, the frame when the value is per frame, and the field.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from render3d.cameras import opengl_to_opencv
from render3d.errors import Render3DError

from .checks import check_number, check_pose, check_vector, describe
from .frames import Frame
from .io import IMAGE_EXTENSIONS, image_size, is_file, printable

#: Camera keys (top level or per frame) -> the range :func:`check_number` accepts.
_CAMERA_NUMBERS: dict[str, dict[str, Any]] = {
    "fl_x": {"low": 0, "low_open": True},
    "fl_y": {"low": 0, "low_open": True},
    "cx": {},
    "cy": {},
    "w": {"low": 1},
    "h": {"low": 1},
    "camera_angle_x": {"low": 0, "high": math.pi, "low_open": True, "high_open": True},
    "camera_angle_y": {"low": 0, "high": math.pi, "low_open": True, "high_open": True},
    "k1": {}, "k2": {}, "k3": {}, "k4": {}, "p1": {}, "p2": {},
    "depth_scale": {"low": 0, "low_open": True},
}
_SUPPORTED_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "")


def camera_values(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The camera keys present in ``entry`` (the top level or one frame), checked.

    Numbers come back as floats (``w`` / ``h`` rounded to ints); ``where`` starts each
    error message (the file, and the frame for per-frame values).
    """
    values: dict[str, Any] = {}
    for key, limits in _CAMERA_NUMBERS.items():
        if key in entry:
            values[key] = check_number(entry[key], key, where, **limits)
    for key in ("w", "h"):
        if key in values:
            values[key] = int(round(values[key]))
    model = entry.get("camera_model", "")
    if not isinstance(model, str):
        raise Render3DError(f"{where}: camera_model must be a name such as OPENCV or PINHOLE, got {describe(model)}")
    if "camera_model" in entry:
        values["camera_model"] = model
    return values


def optional_path(entry: dict[str, Any], keys: tuple[str, ...], root: Path, where: str) -> Optional[Path]:
    """``root / entry[key]`` for the first of ``keys`` present, None when none is; the value must be a non-empty string."""
    for key in keys:
        if key in entry:
            value = entry[key]
            if not isinstance(value, str) or not value:
                raise Render3DError(f"{where}: {key} must be a file path relative to the json, got {describe(value)}")
            return root / value
    return None


def frame_list(meta: dict[str, Any], source: Path) -> list[dict[str, Any]]:
    """The ``frames`` list of a transforms json (a Render3DError when it is missing)."""
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise Render3DError(f"{source} has no 'frames' list; regenerate it (e.g. with ns-process-data or colmap2nerf)")
    return frames


def resolve_image(root: Path, file_path: str) -> tuple[Path, bool]:
    """``(path, exists)`` for a frame's ``file_path``, trying image extensions when it has none."""
    path = root / file_path
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return path, is_file(path)
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", *IMAGE_EXTENSIONS[3:]):
        candidate = path.with_name(path.name + ext)
        if is_file(candidate):
            return candidate, True
    return path, False


def downscaled_copy(root: Path, image_path: Path, factor: int) -> Optional[Path]:
    """``root/images_N/<name>`` for an image ``root/images/<name>`` and ``factor`` N > 1, when that file exists (nerfstudio's layout)."""
    if factor <= 1:
        return None
    try:
        relative = image_path.relative_to(root / "images")
    except ValueError:
        return None
    candidate = root / f"images_{factor}" / relative
    return candidate if is_file(candidate) else None


def opencv_pose(frame: dict[str, Any], name: str, source: Path) -> np.ndarray:
    """The frame's ``transform_matrix`` converted from OpenGL to OpenCV axes, checked."""
    if "transform_matrix" not in frame:
        raise Render3DError(f"{source}: frame {name} has no transform_matrix; add its pose or remove the frame")
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise Render3DError(
            f"{source}: frame {name} has a transform_matrix that is not a 4x4 matrix of numbers; fix that frame"
        ) from None
    c2w = check_pose(matrix, name, source)
    return opengl_to_opencv(torch.from_numpy(c2w)).numpy()


def intrinsics(
    camera: dict[str, Any], image_path: Path, name: str, source: Path
) -> tuple[np.ndarray, int, int, Optional[np.ndarray]]:
    """``(K, width, height, distortion)`` from the merged top-level and per-frame camera keys.

    ``camera`` holds values already checked by :func:`camera_values`.
    """
    model = camera.get("camera_model", "").upper()
    if model not in _SUPPORTED_MODELS:
        raise Render3DError(
            f"{source}: camera_model {model} is not supported (only OPENCV / PINHOLE); undistort the images first"
        )
    if "w" in camera and "h" in camera:
        width, height = camera["w"], camera["h"]
    else:
        width, height = image_size(image_path, source)
    if "fl_x" in camera:
        fx = camera["fl_x"]
    elif "camera_angle_x" in camera:
        fx = 0.5 * width / math.tan(0.5 * camera["camera_angle_x"])
    elif "fl_y" in camera:
        fx = camera["fl_y"]
    else:
        raise Render3DError(f"{source}: frame {name} has no focal length; add fl_x or camera_angle_x")
    if "fl_y" in camera:
        fy = camera["fl_y"]
    elif "camera_angle_y" in camera and "fl_x" not in camera:
        fy = 0.5 * height / math.tan(0.5 * camera["camera_angle_y"])
    else:
        fy = fx
    cx = camera.get("cx", width / 2.0)
    cy = camera.get("cy", height / 2.0)
    dist = np.array([camera.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")])
    if not all(math.isfinite(v) and v > 0 for v in (fx, fy)):
        raise Render3DError(f"{source}: frame {name} has a focal length that is not a positive finite number; fix it")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, width, height, (dist if np.any(dist != 0) else None)


def parse_frames(
    meta: dict[str, Any], root: Path, source: Path, shrink: int, skip_missing: bool
) -> tuple[list[Frame], list[str]]:
    """Frames of a transforms json as :class:`Frame` records (OpenCV poses).

    Returns ``(frames, missing)``: with ``skip_missing`` frames whose image file is absent
    are left out and their ``file_path`` listed in ``missing``; without it the first one
    raises a Render3DError naming it.
    """
    top = camera_values(meta, str(source))
    frames: list[Frame] = []
    missing: list[str] = []
    ignored_k34 = False
    for index, entry in enumerate(frame_list(meta, source)):
        file_path = entry.get("file_path") if isinstance(entry, dict) else None
        if not isinstance(file_path, str) or not file_path:
            raise Render3DError(f"{source}: frame {index} has no file_path; add the image path or remove the frame")
        image_path, exists = resolve_image(root, file_path)
        if not exists:
            if skip_missing:
                missing.append(file_path)
                continue
            raise Render3DError(f"image not found: {printable(image_path)} (listed in {source}); restore the file or remove the frame")
        name = image_path.relative_to(root).as_posix() if image_path.is_relative_to(root) else file_path
        where = f"{source}: frame {name}"
        camera = {**top, **camera_values(entry, where)}
        ignored_k34 |= any(camera.get(k, 0.0) != 0.0 for k in ("k3", "k4"))
        K, width, height, dist = intrinsics(camera, image_path, name, source)
        small = downscaled_copy(root, image_path, shrink)
        frames.append(
            Frame(
                name=name,
                image_path=small or image_path,
                c2w=opencv_pose(entry, name, source),
                K=K,
                width=width,
                height=height,
                source=str(source),
                shrink=1 if small else shrink,
                distortion=dist,
                depth_path=optional_path(entry, ("depth_file_path", "depth_path"), root, where),
                depth_scale=camera.get("depth_scale", 1.0),
                mask_path=optional_path(entry, ("mask_file_path", "mask_path"), root, where),
            )
        )
    if ignored_k34:
        warnings.warn(f"{source}: distortion terms k3 / k4 are ignored (only k1, k2, p1, p2 are modelled)", stacklevel=3)
    return frames, missing


def stated_bounds(meta: dict[str, Any], source: Path) -> Optional[np.ndarray]:
    """Top-level ``aabb`` ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of a transforms json, when given (checked)."""
    if "aabb" not in meta:
        return None
    box = meta["aabb"]
    if not isinstance(box, list) or len(box) != 2:
        raise Render3DError(f"{source}: aabb must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {describe(box)}")
    box = np.array([check_vector(box[0], 3, "aabb[0]", source), check_vector(box[1], 3, "aabb[1]", source)])
    if np.any(box[1] <= box[0]):
        raise Render3DError(f"{source}: aabb min {box[0].tolist()} must be below max {box[1].tolist()} on every axis; fix the box")
    return box


def stated_near_far(meta: dict[str, Any], source: Path) -> Optional[tuple[float, float]]:
    """Top-level ``near`` / ``far`` of a transforms json, when both are given (checked: ``0 <= near < far``)."""
    near = check_number(meta["near"], "near", source, low=0) if "near" in meta else None
    far = check_number(meta["far"], "far", source, low=0, low_open=True) if "far" in meta else None
    if near is None or far is None:
        return None
    if far <= near:
        raise Render3DError(f"{source}: far ({far:g}) must be larger than near ({near:g}); fix the range")
    return near, far
