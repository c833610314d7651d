"""Densification strategies: gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` on any device
(and over the ranks of a distributed run).

gsplat's strategies are plain PyTorch except two helpers that call CUDA kernels:
``compute_relocation`` (MCMC relocation / sample-add) and ``quat_scale_to_covar_preci``
(MCMC position noise). This module holds pure-PyTorch versions of both (the same formulas);
:mod:`render3d.splat.gsplat_compat` is where gsplat is adapted to use them and to sum its
statistics over ranks.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from render3d.splat.project import covariance_3d

def relocation_torch(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
    """MCMC relocation (Kheradmand et al. 2024, eq. 9) in PyTorch.

    A Gaussian split into ``n`` copies gets opacity ``1 - (1 - o)^(1/n)`` and its scale
    multiplied by ``o / sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1)``.
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()
    new_opacities = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    k = torch.arange(n_max, device=opacities.device, dtype=opacities.dtype)
    sign_sqrt = torch.pow(-1.0, k) / torch.sqrt(k + 1.0)
    # coeff[n, k] = sign_sqrt[k] * sum_{i=k+1..n} C(i-1, k)  (rows n = 0..n_max)
    cumulative = torch.cumsum(binoms.to(opacities.dtype), dim=0)  # [i-1, k] summed over i
    coeff = torch.cat([torch.zeros_like(cumulative[:1]), cumulative], dim=0) * sign_sqrt
    powers = new_opacities[:, None] ** (k + 1.0)
    denom = (coeff[n] * powers).sum(-1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_opacities, new_scales


def covar_preci_torch(quats: Tensor, scales: Tensor, compute_covar: bool = True,
                      compute_preci: bool = True) -> tuple[Union[Tensor, None], Union[Tensor, None]]:
    """Covariances ``R S² Rᵀ`` and precisions ``R S⁻² Rᵀ`` ``[N, 3, 3]`` (gsplat's ``quat_scale_to_covar_preci``)."""
    covars = covariance_3d(quats, scales) if compute_covar else None
    precis = covariance_3d(quats, 1.0 / scales) if compute_preci else None
    return covars, precis


def make_strategy(
    name: str,
    refine_start: int,
    refine_stop: int,
    refine_every: int,
    reset_every: int,
    grow_grad2d: float,
    cap_max: int,
    verbose: bool = False,
) -> Union["DefaultStrategy", "MCMCStrategy"]:  # noqa: F821
    """Build gsplat's ``DefaultStrategy`` (``name='default'``, data parallel) or ``MCMCStrategy`` (``'mcmc'``)."""
    from render3d.splat.gsplat_compat import data_parallel_default_strategy, enable_cpu_strategies

    enable_cpu_strategies()
    from gsplat.strategy import MCMCStrategy

    if name == "default":
        return data_parallel_default_strategy()(
            grow_grad2d=grow_grad2d,
            refine_start_iter=refine_start,
            refine_stop_iter=refine_stop,
            refine_every=refine_every,
            reset_every=reset_every,
            key_for_gradient="means2d",
            verbose=verbose,
        )
    if name == "mcmc":
        return MCMCStrategy(
            cap_max=cap_max,
            refine_start_iter=refine_start,
            refine_stop_iter=refine_stop,
            refine_every=refine_every,
            verbose=verbose,
        )
    from render3d.errors import Render3DError

    raise Render3DError(f"unknown densification strategy {name!r}: use --splat.strategy default or mcmc")

