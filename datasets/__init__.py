"""Dataset loaders: every on-disk format becomes one :class:`SceneData`.

>>> scene = load_scene("../shared/data/fern", downscale=8)   # doctest: +SKIP

Formats (detected in this order from the folder contents):

========== ===================================================== =====================
format     detected by                                           module
========== ===================================================== =====================
blender    ``transforms_train.json``                             :mod:`.blender`
nerfstudio ``transforms.json``                                   :mod:`.nerfstudio`
colmap     ``sparse/0/`` or ``sparse/`` with ``cameras.txt|bin`` :mod:`.colmap`
llff       ``poses_bounds.npy``                                  :mod:`.llff`
========== ===================================================== =====================

A folder with both a COLMAP model and ``poses_bounds.npy`` loads as colmap unless
``format="llff"`` is passed. Each format module provides ``detect(root) -> bool`` and a
loader ``(path, downscale, background, test_every) -> SceneData``; registering a new one
is one line in ``_FORMATS``.
"""

from __future__ import annotations

import importlib
import numbers
from pathlib import Path
from typing import Callable, Optional, Sequence

from render3d.errors import Render3DError

from .io import is_dir, is_file, list_images, require_dir
from .scene import SceneData, Split

__all__ = ["SceneData", "Split", "FORMATS", "available_formats", "detect_format", "load_scene"]

# name -> (module, loader function, what marks a folder of that format); detection order.
_FORMATS: dict[str, tuple[str, str, str]] = {
    "blender": ("blender", "load_blender", "transforms_train.json"),
    "nerfstudio": ("nerfstudio", "load_nerfstudio", "transforms.json"),
    "colmap": ("colmap", "load_colmap", "sparse/0/ or sparse/ with cameras.txt|bin"),
    "llff": ("llff", "load_llff", "poses_bounds.npy"),
}
#: Every format name this package knows.
FORMATS: tuple[str, ...] = tuple(_FORMATS)


def _module(name: str):
    """The format's module, or None when it or its loader is missing."""
    module_name = f"{__name__}.{_FORMATS[name][0]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None
        raise
    return module if callable(getattr(module, _FORMATS[name][1], None)) else None


def available_formats() -> list[str]:
    """The formats whose loader is present."""
    return [name for name in _FORMATS if _module(name) is not None]


def _formats_hint() -> str:
    return ", ".join(f"{name} ({_FORMATS[name][2]})" for name in available_formats())


def detect_format(path: str | Path) -> str:
    """The format name of the scene folder ``path`` (see the module docstring for the rules).

    Raises Render3DError when the folder is missing or holds no format we read.
    """
    root = require_dir(path)
    for name in _FORMATS:
        module = _module(name)
        detect: Optional[Callable[[Path], bool]] = getattr(module, "detect", None)
        if detect is not None and detect(root):
            return name
    if _holds_photos(root) or _holds_photos(root / "images"):
        raise Render3DError(f"{root} holds photos but no camera poses (none of: {_formats_hint()}); "
                            f"run `render3d data process {root} --out SCENE` to recover them, then train on SCENE")
    raise Render3DError(f"no scene format recognised in {root}; expected one of: {_formats_hint()}")


def _holds_photos(folder: Path) -> bool:
    """True when ``folder`` is a folder with image files directly inside."""
    return is_dir(folder) and bool(list_images(folder))


def load_scene(
    path: str | Path,
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    test_every: int = 8,
    format: str | None = None,
) -> SceneData:
    """Load the scene in folder ``path`` (format detected unless ``format`` is given).

    Args:
        path: the scene folder (a file inside it, e.g. ``transforms.json``, also works).
        downscale: integer factor to shrink images by (``images_N/`` used when present).
        background: RGB in [0, 1] transparent pixels are composited on (and recorded).
        test_every: formats without stated splits hold out images 0, n, 2n, ... as test
            (val = test); 0 keeps every image for training.
        format: one of :data:`FORMATS` to skip detection (e.g. ``"llff"`` for a folder
            that also has a COLMAP model).
    """
    path = Path(path).expanduser()
    if is_file(path):
        path = path.parent
    if isinstance(downscale, bool) or not isinstance(downscale, numbers.Integral) or downscale < 1:
        raise Render3DError(f"downscale must be a whole number >= 1, got {downscale!r}")
    if isinstance(test_every, bool) or not isinstance(test_every, numbers.Integral) or test_every < 0:
        raise Render3DError(f"test_every must be a whole number >= 0, got {test_every!r}")
    if format is None:
        format = detect_format(path)
    elif format not in _FORMATS:
        raise Render3DError(f"unknown scene format {format!r}; use one of {', '.join(FORMATS)}")
    else:
        require_dir(path)
    module = _module(format)
    if module is None:
        raise Render3DError(f"the {format} loader is not available in this installation; use one of {', '.join(available_formats())}")
    loader = getattr(module, _FORMATS[format][1])
    return loader(path, downscale=int(downscale), background=background, test_every=int(test_every))
