"""Which splat rasteriser the ``torch`` backend runs: compiled tiles on the CPU, else the torch pairs.

:func:`rasterize_to_pixels` has the signature and outputs of
:func:`render3d.splat.rasterize_pairs.rasterize_to_pixels`. It runs the numba kernels of
:mod:`render3d.splat.rasterize_numba` when numba imports, the tensors are float32 on the
CPU and ``RENDER3D_CPU_KERNELS`` is not ``0``; otherwise (no numba, a GPU tensor, another
dtype, or ``RENDER3D_CPU_KERNELS=0``) it runs the pure-torch pair rasteriser, which stays
the reference the compiled path is tested against.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import torch
from torch import Tensor

from render3d.splat.rasterize_pairs import rasterize_to_pixels as rasterize_to_pixels_torch

ENV_VAR = "RENDER3D_CPU_KERNELS"


@functools.lru_cache(maxsize=1)
def _compiled() -> Optional[Callable[..., tuple[Tensor, Tensor]]]:
    """The compiled rasteriser, or ``None`` where numba cannot be imported."""
    try:
        from render3d.splat.rasterize_numba import rasterize_to_pixels_numba
    except ImportError:
        return None
    return rasterize_to_pixels_numba


def compiled_rasterizer_enabled(example: Optional[Tensor] = None) -> bool:
    """Whether :func:`rasterize_to_pixels` takes the compiled path (for tensors like ``example``)."""
    if os.environ.get(ENV_VAR, "1").strip() == "0" or _compiled() is None:
        return False
    return example is None or (example.device.type == "cpu" and example.dtype == torch.float32)


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite one image's Gaussians (see :func:`render3d.splat.rasterize_pairs.rasterize_to_pixels`)."""
    same_kind = all(t.device.type == "cpu" and t.dtype == means2d.dtype for t in (conics, colors, opacities))
    if same_kind and compiled_rasterizer_enabled(means2d):
        return _compiled()(means2d, conics, colors, opacities, depths, radii, width, height)
    return rasterize_to_pixels_torch(means2d, conics, colors, opacities, depths, radii, width, height)
