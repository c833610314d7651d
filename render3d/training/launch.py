"""``render3d train --nproc N``: start N local ranks of the same command, as ``torchrun`` would.

Each rank is ``python -m render3d ARGS`` with torchrun's environment (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``), so the
code path is exactly the one ``torchrun --nproc-per-node N -m render3d ARGS`` takes. The
launcher forwards SIGINT / SIGTERM / SIGHUP to every rank (they stop together at a step
boundary and rank 0 saves), and when one rank exits with an error it gives the others time
to notice and stop on their own before it ends them; its exit status is the first
non-zero status of a rank (0 when all succeed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

from render3d.errors import Render3DError

GRACE_SECONDS = 30.0  # after a rank fails, how long the others get to stop by themselves


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def without_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``--name VALUE`` / ``--name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def rank_environment(rank: int, nproc: int, port: int) -> dict[str, str]:
    """torchrun's variables for local rank ``rank`` of ``nproc`` (CPU threads split between the ranks)."""
    env = dict(os.environ)
    env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)})
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def _wait(processes: list[subprocess.Popen]) -> int:
    """Wait for every rank; after the first failure, give the others GRACE_SECONDS, then end them."""
    first_error = 0
    deadline = None
    while any(p.poll() is None for p in processes):
        for p in processes:
            code = p.poll()
            if code not in (None, 0) and not first_error:
                first_error = code if code > 0 else 128 - code  # killed by signal N: 128 + N, as a shell reports it
                deadline = time.monotonic() + GRACE_SECONDS
        if deadline is not None and time.monotonic() > deadline:
            for p in processes:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.1)
    if first_error:
        return first_error
    code = next((p.returncode for p in processes if p.returncode), 0)
    return code if code >= 0 else 128 - code


def launch_local(nproc: int, argv: Sequence[str]) -> int:
    """Run ``render3d ARGV`` as ``nproc`` local ranks and return the exit status."""
    if not 1 <= nproc <= 256:
        raise Render3DError(f"--nproc {nproc} must be between 1 and 256")
    port = free_port()
    command = [sys.executable, "-m", "render3d", *argv]
    processes = [subprocess.Popen(command, env=rank_environment(r, nproc, port)) for r in range(nproc)]

    def forward(signum: int, frame: object) -> None:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), forward) for n in names}
    try:
        return _wait(processes)
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def launch_or_join(nproc: int, argv: Sequence[str]) -> Optional[int]:
    """Process set-up of a training command, done by the command, never by a trainer's constructor.

    With ``--nproc N`` (N > 1): run this command as N local ranks and return their exit status.
    Otherwise join the process group torchrun described in the environment, if any, and
    return None (go on and train in this process).
    """
    if nproc > 1:
        return launch_local(nproc, without_option(argv, "--nproc"))
    from render3d.training import distributed as dist

    dist.init_from_environment()
    return None
