"""Compile the CPU kernels ahead, at one defined point, and say so while it takes time.

numba compiles a kernel the first time it runs and caches the machine code on disk
(``__pycache__`` beside the code; numba's user-wide cache dir where that is read-only;
``NUMBA_CACHE_DIR`` when set). On a fresh install that first compilation takes tens of
seconds on a 2-core CPU; later runs load the cache in about a second.

:func:`start` runs a small workload that calls every kernel specialisation training,
evaluation, the viewer, rendering and export use (splat projection, SH colours and
rasterisation forward and backward at both feature widths, normals, the preview path, the
NeRF hash encoding forward and backward) in a background thread, so compilation overlaps
with loading the data. The first kernel launch of the program
(:func:`render3d.cpu_kernels.launch`) waits for it; when the wait is longer than
:data:`QUIET_SECONDS` one line says what is happening, and nothing is printed when the
cache is warm. After it nothing compiles while holding the kernel lock, so the viewer's
first render cannot stall training.

Examples:
    >>> from render3d import kernel_warmup
    >>> kernel_warmup.start()           # e.g. at the start of a command  # doctest: +SKIP
    >>> kernel_warmup.wait()            # or let the first kernel launch wait  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
import warnings
from typing import Callable, Optional

#: A warm-up that ends within this many seconds (a warm cache) prints nothing.
QUIET_SECONDS = 1.5
#: What a cold compile takes on a 2-core CPU, for the message (``bench/bench_first_run.py``).
COLD_SECONDS_HINT = 30


class Warmup:
    """One background compile of every kernel specialisation (see the module docstring).

    Args:
        announce: called with one line when the wait for it exceeds :data:`QUIET_SECONDS`.
    """

    def __init__(self, announce: Callable[[str], None]) -> None:
        self.announce = announce
        self.done = threading.Event()
        self.seconds: Optional[float] = None
        self._announced = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="render3d-kernel-warmup", daemon=True)
        self._start = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        try:
            compile_all(self._stop.is_set)
        except Exception as exc:  # the kernels then compile lazily, as without a warm-up
            warnings.warn(f"compiling the CPU kernels ahead failed ({type(exc).__name__}: {exc}); they compile on first use")
        finally:
            self.seconds = time.perf_counter() - self._start
            self.done.set()

    def stop(self) -> None:
        """Skip the workloads not yet begun and wait for the one running (at exit: a program that ends, say on a
        bad option, while the thread is inside torch or numba would abort with ``terminate called``)."""
        self._stop.set()
        if not self.in_warmup_thread():
            self._thread.join()

    def in_warmup_thread(self) -> bool:
        """True on the warm-up's own thread (its kernel launches must not wait for itself)."""
        return threading.current_thread() is self._thread

    def wait(self) -> None:
        """Block until the warm-up has finished, announcing it once when that takes a while."""
        if self.done.is_set() or self.in_warmup_thread():
            return
        remaining = QUIET_SECONDS - (time.perf_counter() - self._start)
        if remaining > 0 and self.done.wait(remaining):
            return
        if not self._announced:
            self._announced = True
            self.announce(f"compiling the CPU kernels (first run after install only, about {COLD_SECONDS_HINT} s on 2 cores; "
                          "cached for later runs)")
        self.done.wait()


_current: Optional[Warmup] = None
_lock = threading.Lock()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start(announce: Callable[[str], None] = _to_stderr) -> Optional[Warmup]:
    """Start the background compile once per process (None where the compiled kernels are not used)."""
    global _current
    from render3d.cpu_kernels import kernels_enabled

    if not kernels_enabled():
        return None
    with _lock:
        if _current is None:
            _current = Warmup(announce)
            atexit.register(_current.stop)
        return _current


def wait() -> None:
    """Wait for a started warm-up (no-op when none was started or from the warm-up's own thread)."""
    if _current is not None:
        _current.wait()


def compile_all(stopped: Callable[[], bool] = lambda: False) -> None:
    """Run every kernel specialisation once on tiny inputs (forward and backward where training needs it);
    ``stopped()`` true skips the workloads not yet begun.

    It draws from its own generator only: it runs beside the command's main thread, whose
    seeded global random stream it must not touch (ranks of a distributed run would diverge).
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    for workload in (_splat_training_workload, _splat_render_workload, _nerf_workload):
        if stopped():
            return
        workload(generator)


def _tiny_splats(generator) -> tuple:
    """A 48-Gaussian model (SH degree 3) and one 16x16 camera looking at it."""
    import torch

    from render3d.cameras import Cameras, look_at
    from render3d.splat.model import GaussianSplats, init_params

    points = torch.randn(48, 3, generator=generator) * 0.3
    model = GaussianSplats(init_params(points, torch.rand(48, 3, generator=generator), 3, init_opacity=0.5, init_scale=1.0), 3, "torch",
                           torch.ones(3))
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in ([0.0, -0.3, -2.5], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]))
    K = torch.tensor([[16.0, 0.0, 8.0], [0.0, 16.0, 8.0], [0.0, 0.0, 1.0]])
    return model, Cameras(K=K[None], c2w=look_at(eye, target, up)[None].float(), width=16, height=16)


def _splat_training_workload(generator) -> None:
    import torch

    model, cameras = _tiny_splats(generator)
    colors, depth, alphas, _ = model.rasterize(cameras, background=torch.ones(3))  # training: RGB + depth, backward
    (colors.sum() + depth.sum() + alphas.sum()).backward()


def _splat_render_workload(generator) -> None:
    import torch

    from render3d.protocol import render_preview

    model, cameras = _tiny_splats(generator)
    with torch.no_grad():
        for mode in ("rgb", "normal"):  # one pass gives rgb, depth and alpha; normals use the wide features
            model.render(cameras, mode=mode)
        render_preview(model, cameras, "rgb")


def _nerf_workload(generator) -> None:
    import torch

    from render3d.nerf.encoding import HashEncoding

    encoding = HashEncoding(generator=generator)
    features = encoding(torch.rand(64, 3, generator=generator))
    features.sum().backward()
