"""What the numba-compiled CPU kernels share: their switch, their compile decorator and one lock.

Kernels live beside the torch code they replace (``render3d/splat/rasterize_numba.py``,
``render3d/splat/project_numba.py``, ``render3d/nerf/encoding_numba.py``); the torch code
stays the reference they are tested against and the path taken where numba cannot be
imported, for tensors that are not float32 on the CPU, or with ``RENDER3D_CPU_KERNELS=0``.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

ENV_VAR = "RENDER3D_CPU_KERNELS"

# Calls into the kernels are serialised: numba's ``workqueue`` threading layer aborts on
# concurrent launches (the viewer renders from its own thread while training runs).
KERNEL_LOCK = threading.Lock()


@contextmanager
def launch() -> Iterator[None]:
    """Hold :data:`KERNEL_LOCK` for a kernel call, after any ahead-of-time compile has finished.

    Waiting for :mod:`render3d.kernel_warmup` first means a kernel never compiles while the
    lock is held, so one thread's first call cannot stall another's.
    """
    from render3d import kernel_warmup

    kernel_warmup.wait()
    with KERNEL_LOCK:
        yield


@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    """Whether numba imports here."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def kernels_enabled(*examples: Optional[Tensor]) -> bool:
    """Whether the compiled kernels run (for tensors like ``examples``: float32 on the CPU, no grad to skip)."""
    if os.environ.get(ENV_VAR, "1").strip() == "0" or not numba_available():
        return False
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in examples)


def njit(parallel: bool = False, inline: bool = False, numpy_errors: bool = False,
         reassociate: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` with the on-disk cache, or without it where no cache dir is writable.

    Kernels are compiled with ``cache=True`` (to ``__pycache__``, else numba's user cache dir);
    where no cache dir is writable they are compiled in memory at each start instead.
    ``inline`` inlines a helper into its callers in numba's own IR (no call, no reference
    counting of its array arguments). ``numpy_errors`` divides as numpy does (a zero divisor
    gives inf or nan instead of raising), which lets the compiler vectorise loops that divide.
    ``reassociate`` lets it reorder floating-point sums (LLVM's ``reassoc`` flag alone), so
    loops that accumulate sums vectorise; results stay the same run to run for one build.
    Every kernel releases the GIL while it runs (it touches only its arrays, and
    :data:`KERNEL_LOCK` serialises launches), so the viewer's server threads and a browser
    driver in the same process keep running during a render.
    """
    import numba

    options = {"parallel": parallel, "fastmath": {"reassoc"} if reassociate else False, "inline": "always" if inline else "never",
               "error_model": "numpy" if numpy_errors else "python", "nogil": True}

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **options)(fn)

    return wrap
