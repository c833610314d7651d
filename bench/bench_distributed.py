"""Data-parallel training against one process, at equal images seen, on the default scene.

    python bench/bench_distributed.py [--steps 600] [--nproc 2] [--backend auto] [--method splat]

Rows (one after another, same machine, same run):
  1. one process, ``--batch-size N`` views per step, all CPU threads;
  2. N processes (``--nproc N``), one view each per step, CPU threads split between them;
  3. one process, one view per step, N x the steps (the usual single-image training).
Rows 1 and 2 train the same model (same global batch); comparing them shows the overhead
of the processes and their all-reduces, not a speed-up, on a machine with 2 cores. On a
GPU machine run it with ``--backend cuda --nproc <GPUs>``: each process takes one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table_header, table_row  # noqa: E402


def run(args: list[str], threads: int, out: Path) -> tuple[float, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "render3d", "train", "--out", str(out), "--no-progress", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="steps of rows 1 and 2 (row 3 runs N times as many)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--method", default="splat")
    args = parser.parse_args()
    n, cores = args.nproc, os.cpu_count() or 1
    shared = ["--method", args.method, "--backend", args.backend]
    rows = [
        (f"1 process x {cores} threads, batch {n}", ["--steps", str(args.steps), "--batch-size", str(n)], cores),
        (f"{n} processes x {max(1, cores // n)} threads, batch 1", ["--steps", str(args.steps), "--nproc", str(n)], max(1, cores // n)),
        (f"1 process x {cores} threads, batch 1", ["--steps", str(args.steps * n)], cores),
    ]
    print(header(f"{args.method} on the default scene, backend {args.backend}") + "\n")
    print(table_header(["configuration", "steps", "images", "wall s", "train s", "images/s", "PSNR"]))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra, threads) in enumerate(rows):
            wall, m = run(shared + extra, threads, Path(tmp) / f"run{i}")
            images = m["steps"] * (n if i < 2 else 1)
            print(table_row([name, m["steps"], images, f"{wall:.1f}", f"{m['train_seconds']:.1f}",
                             f"{images / m['train_seconds']:.1f}", f"{m['psnr']:.2f}"]), flush=True)


if __name__ == "__main__":
    main()
