"""Training-step speed of every zoo model on CPU: FLOPs, steps/s and GFLOP/s beside a plain matmul's.

    python bench/bench_zoo_speed.py                          # this checkout, float32 and bfloat16, 1 and 2 threads
    python bench/bench_zoo_speed.py --before e2458d1          # and the same measurement of an older commit

Each model takes steps on a fixed Fashion-MNIST-shaped batch (64 x 1 x 28 x 28, labels for the
models that use them) with its default options. A row reports the FLOPs of one step (matrix
products and convolutions, forward and backward), the best and median step time, steps/s and
GFLOP/s (from the best), and the GFLOP/s of a 2048x2048 float32 matmul measured just before
the row: on a shared machine the absolute numbers move, their ratio much less. CPU seconds per
step are printed too (on an oversubscribed machine wall time is several times CPU time).

``--before REV`` exports ``render3d/`` at that commit to a temporary folder and measures it in
a subprocess with the same code, so both versions are timed in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 matmul, best of ``repeats`` (self-contained: runs against old checkouts too)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(models: list[str], threads: int, options: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """One row per model: FLOPs per step and step times, using only the zoo API every version has."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from render3d.zoo.base import ImageSpec, registry

    torch.set_num_threads(threads)
    rows = []
    for name in models:
        cls = registry()[name]
        labelled = name in ("gan", "diffusion")
        spec = ImageSpec(1, 28, 10 if labelled else 0)
        fields = set(cls.config_type.__dataclass_fields__)
        if not set(options) <= fields:
            rows.append({"model": name, "threads": threads, **options, "error": "option not supported"})
            continue
        torch.manual_seed(0)
        model = cls(cls.config_type(**options), spec)
        x = torch.rand(64, 1, 28, 28)
        y = torch.randint(0, 10, (64,)) if labelled else None
        model.fit(x, y)
        with FlopCounterMode(display=False) as counter:
            model.fit(x, y)
        gflop = counter.get_total_flops() / 1e9
        model.fit(x, y)
        peak = matmul_gflops()
        wall, cpu = [], []
        for _ in range(steps):
            c0 = time.process_time()
            wall.append(_timed(lambda: model.fit(x, y)))
            cpu.append(time.process_time() - c0)
        best = min(wall)
        rows.append({"model": name, "threads": threads, **options, "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                     "step_gflop": gflop, "best_ms": 1000 * best, "median_ms": 1000 * statistics.median(wall),
                     "cpu_ms": 1000 * statistics.median(cpu), "steps_per_s": 1 / best, "gflops": gflop / best,
                     "matmul_gflops": peak})
    return rows


HEADER = ("| code | model | threads | bf16 | params | GFLOP/step | best ms | median ms | CPU ms | steps/s | GFLOP/s | matmul GFLOP/s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def format_rows(rows: list[dict[str, Any]], label: str) -> str:
    """Markdown table lines (no header) for ``measure``'s rows."""
    return "\n".join(
        f"| {label} | {r['model']} | {r['threads']} | {r.get('bf16', 'no')} | {r['params']:,} | {r['step_gflop']:.2f} | "
        f"{r['best_ms']:.0f} | {r['median_ms']:.0f} | {r['cpu_ms']:.0f} | {r['steps_per_s']:.2f} | {r['gflops']:.1f} | "
        f"{r['matmul_gflops']:.0f} |" for r in rows if "error" not in r)


def run_worker(python_path: Path, models: list[str], threads: int, options: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """``measure`` in a subprocess importing render3d from ``python_path`` (an exported older commit)."""
    code = (
        "import sys, json\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]  # the editable install would win\n"
        f"sys.path.insert(0, {str(python_path)!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from bench_zoo_speed import measure\n"
        f"print(json.dumps(measure({models!r}, {threads}, {options!r}, {steps})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ae,vae,vqvae,pixelcnn,gan,diffusion", help="comma-separated models")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per row (default: 6)")
    parser.add_argument("--before", default=None, help="also measure this git revision (its default options, float32)")
    args = parser.parse_args()
    models = args.models.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    print(f"2048x2048 float32 matmul at the start: {matmul_gflops():.0f} GFLOP/s\n\n{HEADER}", flush=True)
    lines = []
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "render3d"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            for t in threads:
                lines.append(format_rows(run_worker(Path(tmp), models, t, {}, args.steps), args.before))
                print(lines[-1], flush=True)
    for t in threads:
        for bf16 in (False, True):
            lines.append(format_rows(run_worker(ROOT, models, t, {"bf16": bf16}, args.steps), "this checkout"))
            print(lines[-1], flush=True)
    print(f"\n2048x2048 float32 matmul at the end: {matmul_gflops():.0f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
