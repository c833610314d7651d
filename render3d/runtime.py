"""Process-wide CPU settings, made once when the ``render3d`` command starts (before torch loads).

:func:`configure_process` is the first thing :func:`render3d.cli.main` does. It sets:

- **OpenMP wait policy** ``OMP_WAIT_POLICY=PASSIVE``, unless the environment already sets
  it or ``GOMP_SPINCOUNT``. PyTorch's CPU ops and numba's kernels each run an OpenMP thread
  team (two copies of libgomp: torch's own and the system's). By default an idle libgomp
  thread spins for a while before it sleeps, so after every parallel op one team busy-waits
  while the other works; and on a CPU shared with other processes a team's barrier waits for
  threads the kernel has descheduled. On this project's 2-core CPU, shared with other jobs,
  default splat training ran 6.7 times more steps per second with passive waiting than
  with libgomp's default (``bench/bench_train.py --mode threads``; docs/benchmarks.md has the table). With
  passive waiting the two teams never run at once (torch ops and numba kernels take turns
  on the calling thread), so both keep one thread per core. libgomp reads the
  variable when it loads, so it only works before ``import torch``; a Python program that
  imports torch itself can export ``OMP_WAIT_POLICY=PASSIVE`` in the shell instead.
- **numba's thread count** follows ``OMP_NUM_THREADS`` when that is set (``--nproc`` ranks
  get a share of the cores each), so the two thread teams are the same size.
- **glibc malloc thresholds** (:func:`tune_malloc`): PyTorch frees and re-allocates the same
  large buffers every step; above glibc's dynamic mmap threshold each of them is a fresh
  ``mmap`` whose pages fault in again (minor page faults and system time), and freed heap
  memory is trimmed back to the kernel. Raising both thresholds keeps those pages in the
  process for reuse. Only on glibc (``mallopt`` through ctypes); jemalloc users preload it
  instead (``LD_PRELOAD=libjemalloc.so.2``), and then this step does nothing.

``RENDER3D_PROCESS_SETUP=0`` in the environment skips all three.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

ENV_VAR = "RENDER3D_PROCESS_SETUP"

# mallopt parameters (glibc <malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2); larger values are refused
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (musl and others have no ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError outside glibc
    except (OSError, AttributeError):
        return None
    return libc


def _preloaded_allocator() -> bool:
    """Whether another malloc (jemalloc, tcmalloc, mimalloc) is preloaded: glibc's knobs do not reach it."""
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds; True when both were set.

    Leaves the allocator alone where it is not glibc's, where another allocator is preloaded,
    or where ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (glibc's own variables) are
    set. Safe at any time (``mallopt`` takes the arena locks); it affects later allocations.
    """
    if _preloaded_allocator() or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy or torch is already loaded."""
    if "torch" in sys.modules or any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def match_numba_threads() -> bool:
    """Give numba's team ``OMP_NUM_THREADS`` threads too, unless ``NUMBA_NUM_THREADS`` is set."""
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not threads.isdigit() or int(threads) < 1 or "NUMBA_NUM_THREADS" in os.environ or "numba" in sys.modules:
        return False
    os.environ["NUMBA_NUM_THREADS"] = threads
    return True


def configure_process() -> dict[str, bool]:
    """Apply the settings above (once, at process start); returns which of them took effect."""
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return {"openmp_passive": False, "numba_threads": False, "malloc": False}
    return {"openmp_passive": passive_openmp(), "numba_threads": match_numba_threads(), "malloc": tune_malloc()}


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch's CPU ops on ``count`` threads (0: as they are), then restore the earlier count.

    Trainers take their ``--threads`` this way while they run, so building one in a notebook
    changes no process-wide setting.
    """
    import torch

    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
