"""Densification strategies: gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` on any device
(and over the ranks of a distributed run).

gsplat's strategies are plain PyTorch except two helpers that call CUDA kernels:
``compute_relocation`` (MCMC relocation / sample-add) and ``quat_scale_to_covar_preci``
(MCMC position noise). :func:`enable_cpu_strategies` points gsplat's strategy ops at
device-aware versions: tensors on CUDA still go to gsplat's kernels, everything else to
the pure-PyTorch implementations below, which compute the same formulas.
"""

from __future__ import annotations

import functools
from typing import Union

import torch
from torch import Tensor

from render3d.splat.project import covariance_3d

_ENABLED = False


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


def _compute_relocation_any_device(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor):
    if opacities.is_cuda:
        from gsplat.relocation import compute_relocation

        return compute_relocation(opacities, scales, ratios, binoms)
    return relocation_torch(opacities, scales, ratios, binoms)


def _quat_scale_to_covar_preci_any_device(
    quats: Tensor, scales: Tensor, compute_covar: bool = True, compute_preci: bool = True, triu: bool = False
):
    if quats.is_cuda:
        from gsplat import quat_scale_to_covar_preci

        return quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)
    if triu:
        raise NotImplementedError("triu covariances are only needed by gsplat's CUDA kernels")
    covars = covariance_3d(quats, scales) if compute_covar else None
    precis = covariance_3d(quats, 1.0 / scales) if compute_preci else None
    return covars, precis


def enable_cpu_strategies() -> None:
    """Make gsplat's strategy ops device-aware (idempotent)."""
    global _ENABLED
    if _ENABLED:
        return
    import gsplat.strategy.ops as ops

    ops.compute_relocation = _compute_relocation_any_device
    ops.quat_scale_to_covar_preci = _quat_scale_to_covar_preci_any_device
    _ENABLED = True


@functools.lru_cache(maxsize=None)
def _data_parallel_default_strategy() -> type:
    """gsplat's ``DefaultStrategy`` whose densification statistics are summed over the ranks of a
    distributed run before it decides anything (ranks render different views)."""
    from gsplat.strategy import DefaultStrategy

    from render3d.training import distributed as dist

    class DataParallelDefaultStrategy(DefaultStrategy):
        def _update_state(self, params, state, info, packed=False):  # type: ignore[no-untyped-def]
            # this step's increments, summed over the ranks, then added: one process with a
            # batch of B views and B processes with one view each accumulate the same sums
            before = {k: state[k] for k in ("grad2d", "count")}
            state["grad2d"] = state["count"] = None
            super()._update_state(params, state, info, packed=packed)
            for key, old in before.items():
                dist.all_reduce(state[key], "sum")
                if old is not None:
                    state[key] = old + state[key]
            if state.get("radii") is not None:
                dist.all_reduce(state["radii"], "max")

    return DataParallelDefaultStrategy


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
    """Build gsplat's ``DefaultStrategy`` (``name='default'``) or ``MCMCStrategy`` (``'mcmc'``)."""
    enable_cpu_strategies()
    from gsplat.strategy import MCMCStrategy

    if name == "default":
        return _data_parallel_default_strategy()(
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

