"""The three steps of a splat render and the one place that picks who runs them.

A render on the ``torch`` backend is three functions, named by :class:`SplatKernels`:

1. ``project``: Gaussians into each camera (:class:`~render3d.splat.project.Projection`: centres, conics,
   depths, radii and, in the antialiased mode, opacity compensations);
2. ``colors``: each Gaussian's colour per camera from its SH coefficients;
3. ``composite``: one image's Gaussians blended front to back into features and alpha.

Two sets implement them: :data:`TORCH_KERNELS`, pure PyTorch for any device and dtype (the reference), and
:data:`COMPILED_KERNELS`, numba kernels for float32 CPU tensors, tested against the reference. gsplat's CUDA
kernels are the third implementation; :func:`render3d.splat.render.rasterize_cuda` calls them fused, through
``gsplat.rasterization``, so the ``cuda`` backend does not go through this module.

:func:`splat_kernels` is the only dispatch. It returns the compiled set where the kernel setting allows it
(:func:`render3d.cpu_kernels.kernel_choice`: ``render3d --cpu-kernels``, defaulting to ``RENDER3D_CPU_KERNELS``),
numba imports and the tensors are float32 on the CPU. The compiled set hands two cases to the reference
itself: a projection whose cameras need gradients (the compiled one differentiates only the Gaussians) and
a composite of more than :data:`MAX_FEATURES` channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from render3d.cpu_kernels import kernels_enabled
from render3d.splat.project import Projection, covariance_3d, project_gaussians
from render3d.splat.rasterize_pairs import rasterize_to_pixels as composite_pairs
from render3d.splat.sh import sh_colors

MAX_FEATURES = 8  # feature channels the compiled compositor takes (held in scalars, padded to 4 or 8)

#: ``project(means [N, 3], quats [N, 4], scales [N, 3], viewmats [C, 4, 4], Ks [C, 3, 3], width, height, eps2d,
#: near_plane, far_plane, antialiased) -> Projection``
Project = Callable[..., Projection]
#: ``colors(means [N, 3], coeffs [N, K, 3], sh_degree, camera_centers [C, 3]) -> [C, N, 3]``
Colors = Callable[[Tensor, Tensor, int, Tensor], Tensor]
#: ``composite(means2d [N, 2], conics [N, 3], feats [N, D], opacities [N], depths [N], radii [N, 2], width, height)
#: -> (feats [H, W, D], alphas [H, W, 1])``
Composite = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class SplatKernels:
    """One implementation of the three steps (see the module docstring for their signatures)."""

    name: str
    project: Project
    colors: Colors
    composite: Composite


def _project_torch(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                   eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                   antialiased: bool = False) -> Projection:
    return project_gaussians(means, covariance_3d(quats, scales), viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                             antialiased)


TORCH_KERNELS = SplatKernels("torch", _project_torch, sh_colors, composite_pairs)


def _project_compiled(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, *args, **kwargs) -> Projection:
    if viewmats.requires_grad or Ks.requires_grad:  # the compiled projection differentiates only the Gaussians
        return _project_torch(means, quats, scales, viewmats, Ks, *args, **kwargs)
    from render3d.splat.project_numba import project_gaussians_numba

    return project_gaussians_numba(means, quats, scales, viewmats, Ks, *args, **kwargs)


def _colors_compiled(means: Tensor, coeffs: Tensor, sh_degree: int, camera_centers: Tensor) -> Tensor:
    from render3d.splat.project_numba import sh_colors_numba

    return sh_colors_numba(means, coeffs, sh_degree, camera_centers)


def _composite_compiled(means2d: Tensor, conics: Tensor, feats: Tensor, *args) -> tuple[Tensor, Tensor]:
    if feats.shape[-1] > MAX_FEATURES:
        return composite_pairs(means2d, conics, feats, *args)
    from render3d.splat.rasterize_numba import rasterize_to_pixels_numba

    return rasterize_to_pixels_numba(means2d, conics, feats, *args)


COMPILED_KERNELS = SplatKernels("compiled", _project_compiled, _colors_compiled, _composite_compiled)


def splat_kernels(*examples: Tensor) -> SplatKernels:
    """The kernels that render tensors like ``examples``: :data:`COMPILED_KERNELS` where
    :func:`render3d.cpu_kernels.kernels_enabled` says so for them, else :data:`TORCH_KERNELS`.

    Examples:
        >>> import torch
        >>> splat_kernels(torch.zeros(3, dtype=torch.float64)).name  # the compiled kernels take float32 only
        'torch'
    """
    return COMPILED_KERNELS if kernels_enabled(*examples) else TORCH_KERNELS
