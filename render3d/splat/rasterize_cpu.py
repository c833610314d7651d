"""Which splat rasteriser the ``torch`` backend runs: compiled tiles on the CPU, else the torch pairs.

:func:`rasterize_to_pixels` has the signature and outputs of
:func:`render3d.splat.rasterize_pairs.rasterize_to_pixels`. It runs the numba kernels of
:mod:`render3d.splat.rasterize_numba` when numba imports, the tensors are float32 on the
CPU and ``RENDER3D_CPU_KERNELS`` is not ``0``; otherwise (no numba, a GPU tensor, another
dtype, more than eight feature channels, or ``RENDER3D_CPU_KERNELS=0``) it runs the
pure-torch pair rasteriser, which stays the reference the compiled path is tested against.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from render3d.cpu_kernels import ENV_VAR, kernels_enabled
from render3d.splat.rasterize_pairs import rasterize_to_pixels as rasterize_to_pixels_torch

__all__ = ["ENV_VAR", "MAX_FEATURES", "compiled_rasterizer_enabled", "rasterize_to_pixels"]

MAX_FEATURES = 8  # feature channels the compiled kernels take (held in scalars, padded to 4 or 8)


def compiled_rasterizer_enabled(example: Optional[Tensor] = None) -> bool:
    """Whether :func:`rasterize_to_pixels` takes the compiled path (for tensors like ``example``)."""
    return kernels_enabled(example)


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
    if colors.shape[-1] <= MAX_FEATURES and kernels_enabled(means2d, conics, colors, opacities):
        from render3d.splat.rasterize_numba import rasterize_to_pixels_numba

        return rasterize_to_pixels_numba(means2d, conics, colors, opacities, depths, radii, width, height)
    return rasterize_to_pixels_torch(means2d, conics, colors, opacities, depths, radii, width, height)
