"""Multi-process training on ``torch.distributed``: data parallel, launched by ``torchrun``.

    torchrun --nproc-per-node 2 -m render3d train DATA --batch-size 1
    render3d train DATA --nproc 2                      # the same, launched for you

Every rank holds the same model: each renders its own share of the step's global batch
(drawn from a generator seeded identically everywhere, then sliced by rank), gradients are
averaged with ``all_reduce`` inside :func:`render3d.training.backward_and_step`, and every
other random choice comes from torch's global stream, which the trainer keeps identical
on all ranks. Rank 0 owns the run folder, checkpoints, progress bar, evaluation and the
viewer. Once per step the ranks agree (one small ``all_reduce``) on whether to stop
(a signal, the time budget) or wait (the viewer's pause), so they always stop together.

Backends: NCCL when every rank has a GPU, gloo otherwise (the CPU path, and the tests).
A rank that raises writes its message to the rendezvous store; a rank that dies breaks
its peers' connections: the survivors stop with one line naming the failed rank, within
the collective timeout (``RENDER3D_DIST_TIMEOUT`` seconds, default 120), never hanging.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from render3d.errors import Render3DError

_CONTEXT: Optional["DistributedContext"] = None
FAILED_KEY = "render3d/failed"


class RankFailed(Render3DError):
    """Another rank of the run failed; the message says which (exit status 3)."""

    exit_code = 3


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "nccl" or "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def current() -> Optional[DistributedContext]:
    """The run's context when this process is one of several ranks, else None."""
    return _CONTEXT


def rank() -> int:
    return _CONTEXT.rank if _CONTEXT is not None else 0


def world_size() -> int:
    return _CONTEXT.world_size if _CONTEXT is not None else 1


def is_main() -> bool:
    """True on rank 0 (and in single-process runs): the rank that writes files and shows progress."""
    return _CONTEXT is None or _CONTEXT.is_main


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_environment(backend: str = "auto") -> Optional[DistributedContext]:
    """Join the process group torchrun described in the environment (None when not launched by it)."""
    global _CONTEXT
    if _CONTEXT is not None or not launched_by_torchrun():
        return _CONTEXT
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=float(os.environ.get("RENDER3D_DIST_TIMEOUT", "120")))
    try:
        dist.init_process_group(backend=backend, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a rendezvous that fails is the user's setup
        raise Render3DError(f"cannot join the distributed run ({type(exc).__name__}: {exc}): check --rdzv-endpoint and that every node started") from None
    _CONTEXT = DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    _store().set(f"render3d/pid/{_CONTEXT.rank}", f"{socket.gethostname()}:{os.getpid()}")
    return _CONTEXT


SHUTDOWN_BARRIER_SECONDS = 30.0


def shutdown() -> None:
    """Leave the process group (at the end of a run), all ranks together.

    The ranks first meet at a barrier, so no rank tears down gloo's connections while a peer
    still uses them: without it a rank that left first made the other abort now and then at
    exit ("terminate called without an active exception", exit status 134). Where a peer is
    gone (a failed run), the barrier fails or times out and the group is destroyed anyway.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        try:
            timeout = datetime.timedelta(seconds=SHUTDOWN_BARRIER_SECONDS)
            if _CONTEXT.backend == "gloo":
                dist.monitored_barrier(timeout=timeout)
            else:
                dist.barrier()
        except Exception:  # noqa: BLE001 - a peer that died or stopped answering: leave regardless
            pass
        try:
            dist.destroy_process_group()
        finally:
            _CONTEXT = None


def _store() -> dist.Store:
    return dist.distributed_c10d._get_default_store()


def share_text(key: str, value: Optional[str]) -> str:
    """Rank 0's ``value`` on every rank (through the rendezvous store); ``value`` itself when single-process."""
    if _CONTEXT is None:
        assert value is not None
        return value
    store = _store()
    if _CONTEXT.is_main:
        store.set(key, value)
        return value  # type: ignore[return-value]
    return store.get(key).decode()


def report_failure(message: str) -> None:
    """Tell the other ranks why this one is stopping (best effort)."""
    if _CONTEXT is None:
        return
    try:
        _store().set(FAILED_KEY, f"rank {_CONTEXT.rank}: {message}")
    except Exception:  # noqa: BLE001 - the store may be gone already
        pass


def _dead_local_ranks() -> list[int]:
    """Ranks on this machine whose process no longer exists."""
    dead = []
    host = socket.gethostname()
    for r in range(world_size()):
        try:
            where = _store().get(f"render3d/pid/{r}").decode()
        except Exception:  # noqa: BLE001
            continue
        name, _, pid = where.rpartition(":")
        if name == host and not _alive(int(pid)):
            dead.append(r)
    return dead


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, dead but not yet collected by its parent, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def failure_of_peers(exc: BaseException) -> RankFailed:
    """The one-line error for a collective that failed because another rank raised or died."""
    try:
        if _store().check([FAILED_KEY]):
            return RankFailed(f"the distributed run stopped: {_store().get(FAILED_KEY).decode()}")
    except Exception:  # noqa: BLE001 - the store went with a dead rank 0: look for dead processes
        pass
    dead: list[int] = []
    for _ in range(15):  # a peer's sockets close a moment before its process is gone
        dead = _dead_local_ranks()
        if dead:
            break
        time.sleep(0.2)
    if dead:
        return RankFailed(f"the distributed run stopped: rank {', '.join(map(str, dead))} died (killed or crashed) at the current step")
    return RankFailed(f"the distributed run stopped: another rank failed or stopped answering ({type(exc).__name__}); "
                      f"the launcher's report names it")


def _collective(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except Render3DError:
        raise
    except Exception as exc:  # noqa: BLE001 - gloo / NCCL errors when a peer is gone
        raise failure_of_peers(exc) from None


def average_gradients(parameters: Iterable[Tensor]) -> None:
    """Average the gradients of ``parameters`` over all ranks (in place; a no-op in single-process runs)."""
    if _CONTEXT is None:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    _collective(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
    flat /= _CONTEXT.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(module: torch.nn.Module) -> None:
    """Average a module's floating-point buffers (running statistics) over all ranks, in place."""
    if _CONTEXT is None:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            all_reduce(buffer, "sum")
            buffer /= _CONTEXT.world_size


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """``tensor`` reduced over all ranks (sum or max), in place; unchanged in single-process runs."""
    if _CONTEXT is not None:
        _collective(dist.all_reduce, tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def mean_over_ranks(value: float) -> float:
    """``value`` averaged over all ranks (itself in single-process runs)."""
    if _CONTEXT is None:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_CONTEXT.device)
    all_reduce(tensor, "sum")
    return float(tensor.item()) / _CONTEXT.world_size


def agree_values(*values: float) -> list[float]:
    """Each value's maximum over all ranks (one collective): the ranks decide together."""
    if _CONTEXT is None:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_CONTEXT.device)
    all_reduce(tensor, "max")
    return tensor.tolist()


def check_ranks_agree(parameters: Iterable[Tensor], what: str) -> None:
    """Raise when the ranks' copies of ``parameters`` differ (count, shape or values): they must be identical."""
    if _CONTEXT is None:
        return
    params = [p.detach() for p in parameters]
    summary = torch.tensor([float(sum(p.numel() for p in params)),
                            sum(float(p.double().sum()) for p in params),
                            sum(float((p.double() * (i + 1)).abs().sum()) for i, p in enumerate(params))],
                           dtype=torch.float64, device=_CONTEXT.device)
    gathered = [torch.zeros_like(summary) for _ in range(_CONTEXT.world_size)]
    _collective(dist.all_gather, gathered, summary)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise Render3DError(f"the ranks' copies of the {what} diverged (sizes/checksums {[g.tolist() for g in gathered]}): "
                            f"this is a bug; resume from the last checkpoint with one process")
