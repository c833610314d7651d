"""The first run after install: time to a finished 1-step training run with an empty and a warm kernel cache.

    python bench/bench_first_run.py [--repeats 2]

Each row runs ``render3d train --steps 1`` on the default scene in a fresh process with
``NUMBA_CACHE_DIR`` pointing at a folder: an empty one (a fresh install: every CPU kernel
compiles), the same folder again (warm: the kernels load from the cache), and the pure
PyTorch path (``RENDER3D_CPU_KERNELS=0``: nothing to compile) for scale. The time includes
starting Python, loading the scene, the step, the final evaluation and the checkpoint; the
last column says whether the run printed the "compiling the CPU kernels" line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe  # noqa: E402

MESSAGE = "compiling the CPU kernels"


def one_run(cache: Path, out: Path, kernels: bool = True) -> tuple[float, bool]:
    """Seconds of ``render3d train --steps 1`` and whether it announced compilation."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "RENDER3D_CPU_KERNELS": "1" if kernels else "0"}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "render3d", "train", "--steps", "1", "--no-progress", "--out", str(out), "--overwrite"],
                         env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, MESSAGE in run.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="cold/warm pairs, each with a new empty cache (medians reported)")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, bool]]] = {"empty cache (first run after install)": [], "warm cache": [],
                                                 "no compiled kernels (RENDER3D_CPU_KERNELS=0)": []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(Path(tmp) / "scene-cache", Path(tmp) / "run")  # the default scene is rendered once, outside the timing
        for i in range(args.repeats):
            cache = Path(tmp) / f"cache{i}"
            rows["empty cache (first run after install)"].append(one_run(cache, Path(tmp) / "run"))
            rows["warm cache"].append(one_run(cache, Path(tmp) / "run"))
            rows["no compiled kernels (RENDER3D_CPU_KERNELS=0)"].append(one_run(cache, Path(tmp) / "run", kernels=False))
    print(f"Machine: {describe()}\n")
    print("| `render3d train --steps 1` | seconds (median) | announced compiling |\n|---|---|---|")
    for name, results in rows.items():
        print(f"| {name} | {statistics.median(s for s, _ in results):.1f} | {'yes' if all(m for _, m in results) else 'no'} |")


if __name__ == "__main__":
    main()
