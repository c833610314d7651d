"""Blender / NeRF-synthetic scenes: ``transforms_{train,val,test}.json`` next to the images.

Poses are OpenGL camera-to-world matrices (converted to OpenCV); intrinsics come from
``camera_angle_x`` (or ``fl_x`` / ``fl_y`` / ``cx`` / ``cy`` / ``w`` / ``h`` when given); see
:mod:`.transforms_json` for every key read, including optional depth and mask files.
RGBA images are composited on ``background`` (white by default) and their alpha kept in
``Split.alpha``. The splits are the files' own: a missing ``transforms_val.json`` makes val
the test split, a missing ``transforms_test.json`` an empty test split. Bounds, near/far
(unless the json states ``near`` / ``far`` / ``aabb``) and ``forward_facing`` are estimated as
described in :mod:`.geometry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .frames import build_scene
from .io import read_json, require_dir
from .scene import SceneData
from .transforms_json import parse_frames, stated_bounds, stated_near_far

SPLITS = ("train", "val", "test")


def detect(root: Path) -> bool:
    """True when ``root`` holds ``transforms_train.json``."""
    return (root / "transforms_train.json").is_file()


def load_blender(
    path: str | Path,
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    test_every: int = 8,
) -> SceneData:
    """Load a Blender / NeRF-synthetic scene folder.

    Args:
        path: the folder holding ``transforms_train.json``.
        downscale: shrink images (and intrinsics) by this integer factor.
        background: RGB in [0, 1] that transparent pixels are composited on.
        test_every: unused (the format states its splits); accepted for a uniform signature.
    """
    root = require_dir(path)
    metas, frames = {}, {}
    for split in SPLITS:
        source = root / f"transforms_{split}.json"
        if split == "train" or source.is_file():
            metas[split] = read_json(source)
            frames[split] = parse_frames(metas[split], root, source, downscale, skip_missing=False)[0]
    test = frames.get("test", [])
    val = frames.get("val", test)
    return build_scene(
        frames["train"], val, test,
        fmt="blender", root=root, source=root / "transforms_train.json", background=background,
        near_far=stated_near_far(metas["train"], root / "transforms_train.json"),
        bounds=stated_bounds(metas["train"], root / "transforms_train.json"),
    )
