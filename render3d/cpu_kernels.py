"""What the numba-compiled CPU kernels share: their switch, their compile decorator and one lock.

Kernels live beside the torch code they replace (``render3d/splat/rasterize_numba.py``,
``render3d/splat/project_numba.py``, ``render3d/nerf/encoding_numba.py``); the torch code
stays the reference they are tested against and the path taken where numba cannot be
imported, for tensors that are not float32 on the CPU, or where the kernel setting says
``torch``.

The setting is process-wide: ``render3d --cpu-kernels compiled|torch COMMAND ...`` on the
command line, :func:`set_kernel_choice` in Python. Left unset, ``RENDER3D_CPU_KERNELS=0``
means ``torch`` and anything else ``compiled``.
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
KERNEL_CHOICES = ("compiled", "torch")
_choice: Optional[str] = None  # set_kernel_choice; None: from ENV_VAR

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


def set_kernel_choice(choice: Optional[str]) -> None:
    """Run the ``compiled`` CPU kernels (where numba imports) or the pure-``torch`` code; None: as
    ``RENDER3D_CPU_KERNELS`` says (``0``: torch).

    Raises:
        Render3DError: ``choice`` is not one of :data:`KERNEL_CHOICES`.
    """
    global _choice
    if choice is not None and choice not in KERNEL_CHOICES:
        from render3d.errors import Render3DError

        raise Render3DError(f"--cpu-kernels {choice!r} is not known: use {' or '.join(KERNEL_CHOICES)}")
    _choice = choice


def kernel_choice() -> str:
    """The CPU kernel setting in force: ``compiled`` or ``torch`` (see the module docstring)."""
    if _choice is not None:
        return _choice
    return "torch" if os.environ.get(ENV_VAR, "1").strip() == "0" else "compiled"


def kernels_enabled(*examples: Optional[Tensor]) -> bool:
    """Whether the compiled kernels run (for tensors like ``examples``: float32 on the CPU, no grad to skip)."""
    if kernel_choice() == "torch" or not numba_available():
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
