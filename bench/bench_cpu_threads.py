"""Thread teams on the CPU: training steps/s under each OpenMP wait policy and thread split.

    python bench/bench_cpu_threads.py [--method splat] [--steps 30] [--rounds 2]

PyTorch (its own libgomp) and numba's ``omp`` threading layer (the system libgomp) each keep
a thread team. Each configuration below trains the default scene in a fresh process
(``--warmup`` steps, then ``--steps`` timed ones; glibc malloc tuned alike in all), rounds
interleaved so machine load hits every row alike; cells are medians over the rounds. CPU ms
counts every thread of the process: what a spinning team burns shows up there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# (label, environment, torch threads, numba threads); cores = os.cpu_count()
CORES = os.cpu_count() or 1
CONFIGS = [
    ("libgomp default (spins), torch N + numba N", {}, CORES, CORES),
    ("libgomp default (spins), torch 1 + numba N", {}, 1, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch N + numba N", {"OMP_WAIT_POLICY": "PASSIVE"}, CORES, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch 1 + numba N", {"OMP_WAIT_POLICY": "PASSIVE"}, 1, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch 1 + numba 1", {"OMP_WAIT_POLICY": "PASSIVE"}, 1, 1),
    ("GOMP_SPINCOUNT=10000, torch N + numba N", {"GOMP_SPINCOUNT": "10000"}, CORES, CORES),
    ("PASSIVE + numba workqueue layer, N + N", {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER": "workqueue"}, CORES, CORES),
]
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")


def worker(method: str, warmup: int, steps: int, torch_threads: int, numba_threads: int) -> None:
    """Train ``warmup + steps`` steps here and print one JSON line of timings."""
    from render3d.runtime import tune_malloc

    tune_malloc()
    import numba
    import torch

    from render3d.methods import get_method
    from render3d.train import TrainConfig, Trainer

    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)
    config = TrainConfig(method=method, steps=3000, backend="torch", out=tempfile.mkdtemp(), save_every=0, progress=False)
    trainer = Trainer(config, get_method(method).config_type())
    for _ in range(warmup):
        trainer.step_once()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        trainer.step_once()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"steps_per_s": steps / wall, "cpu_ms": 1000 * cpu / steps, "layer": numba.threading_layer()}))


def run_config(env: dict[str, str], args: argparse.Namespace, torch_threads: int, numba_threads: int) -> dict:
    """One fresh process with ``env`` on top of a clean OpenMP environment."""
    base = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    cmd = [sys.executable, __file__, "--worker", "--method", args.method, "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--torch-threads", str(torch_threads), "--numba-threads", str(numba_threads)]
    out = subprocess.run(cmd, env={**base, **env}, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="splat", help="splat or nerf")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-threads", type=int, default=CORES, help=argparse.SUPPRESS)
    parser.add_argument("--numba-threads", type=int, default=CORES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.method, args.warmup, args.steps, args.torch_threads, args.numba_threads)
        return
    results: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for label, env, tt, nt in CONFIGS:
            results.setdefault(label, []).append(run_config(env, args, tt, nt))
    base = statistics.median(r["steps_per_s"] for r in results[CONFIGS[0][0]])
    print(f"{args.method} training on the default scene, {CORES} cores (N = {CORES}), {args.steps} steps after {args.warmup}, "
          f"median of {args.rounds} interleaved rounds; load average at the end {os.getloadavg()}")
    print("| configuration | steps/s | vs first row | CPU ms per step | numba layer |\n|---|---|---|---|---|")
    for label, rows in results.items():
        rate = statistics.median(r["steps_per_s"] for r in rows)
        cpu = statistics.median(r["cpu_ms"] for r in rows)
        print(f"| {label} | {rate:.2f} | {rate / base:.2f}x | {cpu:.0f} | {rows[0]['layer']} |")


if __name__ == "__main__":
    main()
