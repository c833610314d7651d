"""The default job: ``render3d train`` on the bundled scene, timed end to end.

    python bench/bench_train_default.py [--steps 1200] [--backend auto] [--rounds 1]
        [--variant NAME=VAR=VALUE,VAR=VALUE ...] [--baseline-tree DIR] [--allocator] [--no-warmup]

Runs the CLI in a subprocess per variant and prints wall time, training time, test PSNR / SSIM, the Gaussian count, and the
process's minor page faults, user and system CPU seconds and peak memory. Variants run in
turn, ``--rounds`` times, interleaved, so machine load hits them alike (rows: medians).
Each variant first runs 20 steps untimed (unless ``--no-warmup``): that generates the scene
and lets numba compile kernels whose source changed (cached after, as for a user's second
run), so the rows time training, not a one-off compilation.

- ``--variant NAME=ENV``: the command with extra environment variables (``NAME=`` alone: as is).
- ``--baseline-tree DIR``: also the code exported from an older commit into DIR
  (``git archive COMMIT | tar -x -C DIR``, with ``DIR/render3d/{viewer,datasets,assets}``
  linked to ``DIR/{viewer,datasets,assets}``), run with ``PYTHONPATH=DIR``.
- ``--allocator``: the glibc malloc tuning of ``render3d/runtime.py`` on and off (the
  OpenMP wait policy passive in both).

Targets on a 2-core CPU: under 180 s wall, at least 28 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


WARMUP_STEPS = 20


def run_once(env: dict[str, str], steps: int | None, backend: str) -> dict[str, float]:
    """One ``render3d train`` in a fresh process; its metrics and resource usage."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "render3d", "train", "--out", f"{tmp}/run", "--backend", backend, "--no-progress"]
        if steps:
            cmd += ["--steps", str(steps)]
        start = time.perf_counter()
        # cwd: the temporary folder, so that ``-m`` does not put this checkout ahead of PYTHONPATH (--baseline-tree)
        process = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, cwd=tmp)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"render3d train failed with {env}")
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {"wall": wall, "train": m["train_seconds"], "psnr": m["psnr"], "ssim": m["ssim"], "gaussians": m["gaussians"],
            "steps": m["steps"], "minflt": usage.ru_minflt, "user": usage.ru_utime, "sys": usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "backend": m["backend"]}


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="override the default step count")
    parser.add_argument("--backend", default="auto", help="auto, cuda or torch")
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant (interleaved); rows are medians")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VAR=VALUE,...")
    parser.add_argument("--baseline-tree", default=None, help="an exported older commit to run as the 'before' row")
    parser.add_argument("--allocator", action="store_true", help="compare glibc malloc tuned and untuned")
    parser.add_argument("--no-warmup", action="store_true", help="time the first run too (numba compiling changed kernels)")
    args = parser.parse_args()

    variants = [parse_variant(v) for v in args.variant]
    if args.allocator:
        variants += [("malloc tuned (default)", {"OMP_WAIT_POLICY": "PASSIVE"}),
                     ("glibc malloc defaults", {"RENDER3D_PROCESS_SETUP": "0", "OMP_WAIT_POLICY": "PASSIVE"})]
    if args.baseline_tree:
        variants.insert(0, (f"before ({Path(args.baseline_tree).name})", {"PYTHONPATH": str(Path(args.baseline_tree).resolve())}))
    variants = variants or [("render3d train", {})]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    if not args.no_warmup:  # untimed: compiles (and caches) kernels whose source changed, and makes the scene
        for _, env in variants:
            run_once(env, WARMUP_STEPS, args.backend)
    for _ in range(args.rounds):
        for name, env in variants:
            results[name].append(run_once(env, args.steps, args.backend))

    print(f"cpu: {os.cpu_count()} cores; {args.rounds} round(s), medians; load average at the end {os.getloadavg()}")
    print("| variant | backend | steps | wall s | train s | PSNR | SSIM | Gaussians | minor faults | user s | sys s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "backend"}
        print(f"| {name} | {rows[0]['backend']} | {med['steps']:.0f} | {med['wall']:.1f} | {med['train']:.1f} | {med['psnr']:.2f} | "
              f"{med['ssim']:.3f} | {med['gaussians']:.0f} | {med['minflt'] / 1e6:.2f}M | {med['user']:.1f} | {med['sys']:.2f} | "
              f"{med['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
