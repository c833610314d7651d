"""Time budgets and coarse-to-fine images on the default scene at a real resolution (400 px by default).

    python bench/bench_budget.py [--resolution 400] [--steps 3000] [--budget 150] [--rows reference,truncated,planned,coarse]

Rows, each one splat run of the default recipe on the same scene, in this process:

- ``reference``: ``--steps N`` with no time budget (what the budget is measured against);
- ``truncated``: ``--steps N --max-seconds B`` as render3d ran it before a budget planned the run
  (the schedule counts steps, so the budget cuts it part-way: densification and learning-rate
  decay unfinished);
- ``planned``: ``--steps N --max-seconds B`` now (the schedule is planned onto the budget);
- ``coarse``: ``planned`` plus ``--splat.resolution-start 0.25`` (the first steps on quarter-size images);
- ``capped``: ``planned`` plus ``--splat.max-gaussians 15000`` (a Gaussian budget).

Prints test PSNR / SSIM, steps, seconds, Gaussians and peak RSS of the process so far, and the
machine (with a plain matmul's GFLOP/s) before and after, so the table can be compared across machines.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe  # noqa: E402

from render3d.datasets import load_scene  # noqa: E402
from render3d.datasets.synthetic import generate_scene  # noqa: E402
from render3d.splat.method import SplatConfig  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402

ROWS = ("reference", "truncated", "planned", "coarse", "capped")


class TruncatedTrainer(Trainer):
    """The trainer before time budgets were planned: every hook sees the real step."""

    def planned_step(self) -> int:
        self._planned = self.step
        return self.step


def run(row: str, scene, folder: Path, steps: int, budget: float) -> dict:
    config = TrainConfig(steps=steps, max_seconds=0.0 if row == "reference" else budget, out=str(folder / row), save_every=0,
                         progress=False)
    method = SplatConfig(resolution_start=0.25 if row == "coarse" else 1.0, max_gaussians=15_000 if row == "capped" else 0)
    trainer_type = TruncatedTrainer if row == "truncated" else Trainer
    started = time.perf_counter()
    metrics = trainer_type(config, method, scene=scene).run()
    return {"row": row, "psnr": metrics["psnr"], "ssim": metrics["ssim"], "steps": metrics["steps"],
            "planned": metrics["planned_steps"], "seconds": time.perf_counter() - started,
            "train_seconds": metrics["train_seconds"], "gaussians": int(metrics["gaussians"]),
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of training of the budgeted rows")
    parser.add_argument("--rows", default=",".join(ROWS[:4]), help=f"comma-separated, of {', '.join(ROWS)}")
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}: use {', '.join(ROWS)}")
    machine = describe()  # before the runs, and again after
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = load_scene(generate_scene(Path(tmp) / "scene", resolution=args.resolution))
        for row in rows:
            results.append(run(row, scene, Path(tmp), args.steps, args.budget))
            print(results[-1], flush=True)
    print(f"\nMachine before: {machine}\nMachine after: {describe()}\n\n`python bench/bench_budget.py --resolution {args.resolution} "
          f"--steps {args.steps} --budget {args.budget:g} --rows {','.join(rows)}`, {time.strftime('%Y-%m-%d')}\n")
    print("| run | test PSNR | SSIM | steps (planned) | train s | Gaussians | peak RSS |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['steps']} ({r['planned']}) | {r['train_seconds']:.0f} | "
              f"{r['gaussians']:,} | {r['rss_gb']:.2f} GB |")


if __name__ == "__main__":
    main()
