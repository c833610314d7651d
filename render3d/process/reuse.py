"""Reusing an earlier run's features and matches when a scene is processed again (``--overwrite``).

Feature extraction and exhaustive matching are most of a run's time; trying another mapper
(``--mapper global``) or seed should not pay for them again. The features database of a
finished scene (``OUT/colmap/database.db``) is reused when a fingerprint written beside it
matches the new run's: the same image bytes under the same names, the same camera groups,
the same feature settings and the same matcher.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from .inputs import CaptureImage
from .sfm import SfmOptions

FINGERPRINT = "fingerprint.json"


def fingerprint(images: Sequence[CaptureImage], folder: Path, options: SfmOptions, matcher: str) -> dict[str, Any]:
    """What the features and matches of ``images`` (files in ``folder``) depend on."""
    return {
        "images": {im.name: hashlib.sha1((folder / im.name).read_bytes()).hexdigest() for im in images},
        "cameras": {im.name: [im.group, im.focal] for im in images},
        "features": {"max_image_size": options.max_image_size, "camera_model": options.camera_model},
        "matcher": matcher,
    }


def restore(old_colmap: Path, colmap_dir: Path, wanted: dict[str, Any]) -> bool:
    """Copy ``old_colmap/database.db`` into ``colmap_dir`` when its fingerprint equals ``wanted``; whether it did."""
    try:
        same = json.loads((old_colmap / FINGERPRINT).read_text()) == wanted and (old_colmap / "database.db").is_file()
    except (OSError, ValueError):
        return False
    if same:
        shutil.copyfile(old_colmap / "database.db", colmap_dir / "database.db")
    return same


def save(colmap_dir: Path, print_: dict[str, Any]) -> None:
    """Write the fingerprint beside the database it describes."""
    (colmap_dir / FINGERPRINT).write_text(json.dumps(print_))
