"""nerfstudio / instant-ngp scenes: one ``transforms.json`` for every frame.

Camera keys may be shared (top level) or per frame; see :mod:`.transforms_json`. Poses are
OpenGL camera-to-world (converted to OpenCV) and kept in the json's world frame: no
re-orientation or re-centring. Frames whose image file is missing are skipped with one
warning that counts them. Frames are sorted by image path and every ``test_every``-th
(0, n, 2n, ...) is held out as test; val is the same split as test.

Bounds: the json's ``aabb`` box when it states one; else instant-ngp's ``aabb_scale`` box
when present (a cube of side ``aabb_scale`` in ngp's unit space, mapped back with the
json's ``scale`` (default 0.33) and ``offset`` (default 0.5)); otherwise the estimate of
:mod:`.geometry`, as are near/far (unless the json states ``near`` / ``far``) and
``forward_facing``.

Sparse points: the binary PLY named by ``ply_file_path`` (nerfstudio's key; ``x y z`` and
optional ``red green blue``), in the same world frame as the poses.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from render3d.errors import Render3DError

from .checks import check_number, check_vector
from .frames import build_scene, holdout
from .colmap_model import finite_points
from .io import read_json, require_dir
from .ply import read_ply_vertices
from .scene import SceneData
from .transforms_json import frame_list, parse_frames, stated_bounds, stated_near_far


def detect(root: Path) -> bool:
    """True when ``root`` holds ``transforms.json``."""
    return (root / "transforms.json").is_file()


def ngp_bounds(meta: dict[str, Any], source: Path) -> Optional[np.ndarray]:
    """instant-ngp's scene box ``[2, 3]`` in the json's world frame, or None without ``aabb_scale`` (values checked)."""
    if "aabb_scale" not in meta:
        return None
    aabb_scale = check_number(meta["aabb_scale"], "aabb_scale", source, low=0, low_open=True)
    scale = check_number(meta.get("scale", 0.33), "scale", source, low=0, low_open=True)
    offset = np.array(check_vector(meta.get("offset", [0.5, 0.5, 0.5]), 3, "offset", source))
    # ngp maps a world point p to (p.y, p.z, p.x) * scale + offset; its box is centred on 0.5.
    center_ngp = (0.5 - offset) / scale
    center = np.array([center_ngp[2], center_ngp[0], center_ngp[1]])
    half = 0.5 * aabb_scale / scale
    return np.stack([center - half, center + half])


def ply_points(meta: dict[str, Any], root: Path, source: Path) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The points of ``ply_file_path``: ``(xyz [M, 3] float64, rgb [M, 3] uint8)``, or ``(None, None)`` without the key.

    Rows with a NaN or infinite coordinate are dropped with one warning; a missing file, a malformed PLY or
    one without ``x y z`` is a one-line Render3DError naming it.
    """
    relative = meta.get("ply_file_path")
    if relative is None:
        return None, None
    if not isinstance(relative, str) or not relative:
        raise Render3DError(f"{source}: ply_file_path must be a file name relative to the json; fix or remove it")
    path = root / relative
    vertices = read_ply_vertices(path)
    names = vertices.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise Render3DError(f"{path} (ply_file_path in {source}) has no x, y, z vertex properties; write the points again")
    xyz = np.stack([vertices[n].astype(np.float64) for n in "xyz"], axis=1)
    if {"red", "green", "blue"} <= set(names):
        rgb = np.stack([vertices[n] for n in ("red", "green", "blue")], axis=1)
        rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8) if rgb.dtype.kind == "f" else np.clip(rgb, 0, 255).astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    xyz, rgb = finite_points(xyz, rgb, path)
    return (xyz, rgb) if len(xyz) else (None, None)


def load_nerfstudio(
    path: str | Path,
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    test_every: int = 8,
    transforms: str = "transforms.json",
) -> SceneData:
    """Load a nerfstudio / instant-ngp scene folder.

    Args:
        path: the folder holding ``transforms.json`` (image paths are relative to it).
        downscale: shrink images (and intrinsics) by this integer factor.
        background: RGB in [0, 1] that transparent pixels are composited on.
        test_every: hold out frames 0, n, 2n, ... as test (and val); 0 keeps all for training.
        transforms: the json's file name inside ``path``.
    """
    root = require_dir(path)
    source = root / transforms
    meta = read_json(source)
    frames, missing = parse_frames(meta, root, source, downscale, skip_missing=True)
    if missing:
        total = len(frame_list(meta, source))
        warnings.warn(
            f"{source}: skipped {len(missing)} of {total} frames whose image is missing (first: {missing[0]})",
            stacklevel=2,
        )
    frames.sort(key=lambda f: f.name)
    stated, ngp = stated_bounds(meta, source), ngp_bounds(meta, source)
    train, test = holdout(frames, test_every)
    points, colors = ply_points(meta, root, source)
    return build_scene(
        train, test, test,
        fmt="nerfstudio", root=root, source=source, background=background,
        points=points, point_colors=colors,
        bounds=stated if stated is not None else ngp,
        near_far=stated_near_far(meta, source),
    )
