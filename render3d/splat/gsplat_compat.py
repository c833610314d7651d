"""Where render3d adapts gsplat, in one place, for the gsplat version it was written against.

Two adaptations, both needed only because gsplat's strategies assume CUDA and one process:

- :func:`enable_cpu_strategies` replaces two functions of ``gsplat.strategy.ops``
  (``compute_relocation`` and ``quat_scale_to_covar_preci``) with device-aware versions: CUDA
  tensors still go to gsplat's kernels, others to the PyTorch versions in
  :mod:`render3d.splat.strategies`.
- :func:`data_parallel_default_strategy` subclasses ``DefaultStrategy`` and overrides its
  private ``_update_state`` to sum the densification statistics over the ranks.

Both depend on gsplat's internals, so :func:`require_gsplat` checks the installed version
first and stops with one line on any other.
"""

from __future__ import annotations

import functools

from torch import Tensor

from render3d.errors import Render3DError

#: The gsplat release these adaptations were written and tested against (pinned in pyproject.toml).
GSPLAT_VERSION = "1.5.3"

_ENABLED = False


def require_gsplat() -> None:
    """Raise a one-line :class:`Render3DError` unless the installed gsplat is :data:`GSPLAT_VERSION`."""
    import gsplat

    found = getattr(gsplat, "__version__", "unknown")
    if found != GSPLAT_VERSION:
        raise Render3DError(f"render3d adapts gsplat {GSPLAT_VERSION} (render3d/splat/gsplat_compat.py) but gsplat {found} "
                            f"is installed: pip install gsplat=={GSPLAT_VERSION}")


def _compute_relocation_any_device(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor):
    if opacities.is_cuda:
        from gsplat.relocation import compute_relocation

        return compute_relocation(opacities, scales, ratios, binoms)
    from render3d.splat.strategies import relocation_torch

    return relocation_torch(opacities, scales, ratios, binoms)


def _quat_scale_to_covar_preci_any_device(
    quats: Tensor, scales: Tensor, compute_covar: bool = True, compute_preci: bool = True, triu: bool = False
):
    if quats.is_cuda:
        from gsplat import quat_scale_to_covar_preci

        return quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)
    if triu:
        raise NotImplementedError("triu covariances are only needed by gsplat's CUDA kernels")
    from render3d.splat.strategies import covar_preci_torch

    return covar_preci_torch(quats, scales, compute_covar, compute_preci)


def enable_cpu_strategies() -> None:
    """Make gsplat's strategy ops device-aware (idempotent; checks the gsplat version first)."""
    global _ENABLED
    if _ENABLED:
        return
    require_gsplat()
    import gsplat.strategy.ops as ops

    ops.compute_relocation = _compute_relocation_any_device
    ops.quat_scale_to_covar_preci = _quat_scale_to_covar_preci_any_device
    _ENABLED = True


@functools.lru_cache(maxsize=None)
def data_parallel_default_strategy() -> type:
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
