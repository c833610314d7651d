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
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .checks import check_number, check_vector
from .frames import build_scene, holdout
from .io import read_json, require_dir
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
    return build_scene(
        train, test, test,
        fmt="nerfstudio", root=root, source=source, background=background,
        bounds=stated if stated is not None else ngp,
        near_far=stated_near_far(meta, source),
    )
