"""render3d: 3D neural rendering (Gaussian Splatting, NeRF) on CPU and CUDA."""

from __future__ import annotations

from os import PathLike
from typing import Any

__version__ = "0.1.0"


def load(path: str | PathLike, backend: str = "auto") -> Any:
    """The trained model in a run folder or file, whichever trainer wrote it (:func:`render3d.loading.load`).

    Importing ``render3d`` stays light (no torch) until this is called.
    """
    from render3d.loading import load as load_model

    return load_model(path, backend=backend)
