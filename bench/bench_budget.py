"""Time budgets and coarse-to-fine images at a real resolution: the default scene at 400 px, or a capture.

    python bench/bench_budget.py [--resolution 400] [--steps 3000] [--budget 150] [--rows reference,truncated,planned,coarse]
    python bench/bench_budget.py --data FOLDER --downscale 8 --budget 300 --rows planned,planned+coarse+antialiased
    python bench/bench_budget.py --data FOLDER --downscale 8 --budget 300 --method nerf --rows planned

Rows, each one splat run of the default recipe on the same scene, in this process:

- ``reference``: ``--steps N`` with no time budget (what the budget is measured against);
- ``truncated``: ``--steps N --max-seconds B`` as render3d ran it before a budget planned the run
  (the schedule counts steps, so the budget cuts it part-way: densification and learning-rate
  decay unfinished);
- ``planned``: ``--steps N --max-seconds B`` now (the schedule is planned onto the budget);
- ``coarse``: ``planned`` plus ``--splat.resolution-start 0.25`` (the first steps on quarter-size images);
- ``capped``: ``planned`` plus ``--splat.max-gaussians 15000`` (a Gaussian budget).

A row may add options to any of the first three with ``+``: ``coarse``, ``capped``, ``antialiased``
(``--splat.antialiased``), ``exposure`` (``--splat.appearance exposure``) and ``slowdecay``
(``--splat.lr-means-final 0.1``: positions end at a tenth of their learning rate, not a hundredth), e.g.
``planned+coarse+antialiased``. ``--method nerf`` trains the hash-grid NeRF's default recipe instead
(its rows take ``+exposure`` only).

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
from render3d.nerf.method import NerfConfig  # noqa: E402
from render3d.splat.method import SplatConfig  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402

BASES = ("reference", "truncated", "planned")
OPTIONS = {  # what each ``+NAME`` of a row sets in SplatConfig
    "coarse": {"resolution_start": 0.25},
    "capped": {"max_gaussians": 15_000},
    "antialiased": {"antialiased": True},
    "exposure": {"appearance": "exposure"},
    "slowdecay": {"lr_means_final": 0.1},
}
ROWS = ("reference", "truncated", "planned", "coarse", "capped")  # the default scene's table
SHORTHANDS = {"coarse": "planned+coarse", "capped": "planned+capped"}


NERF_OPTIONS = ("exposure",)  # the options a --method nerf row may add


def row_parts(row: str, method: str = "splat") -> tuple[str, list[str]]:
    """``(base, options)`` of a row name such as ``planned+coarse+antialiased``; ValueError if unknown."""
    base, *options = SHORTHANDS.get(row, row).split("+")
    allowed = OPTIONS if method == "splat" else NERF_OPTIONS
    unknown = [name for name in options if name not in allowed]
    if base not in BASES or unknown:
        raise ValueError(f"unknown row {row!r} for --method {method}: a row is one of {', '.join(BASES)}, "
                         f"then +OPTION from {', '.join(allowed)}")
    return base, options


class TruncatedTrainer(Trainer):
    """The trainer before time budgets were planned: every hook sees the real step."""

    def planned_step(self) -> int:
        self._planned = self.step
        return self.step


def run(row: str, scene, folder: Path, steps: int, budget: float, method_name: str = "splat") -> dict:
    base, options = row_parts(row, method_name)
    config = TrainConfig(method=method_name, steps=steps, max_seconds=0.0 if base == "reference" else budget,
                         out=str(folder / row), save_every=0, progress=False)
    settings = {key: value for name in options for key, value in OPTIONS[name].items()}
    method = SplatConfig(**settings) if method_name == "splat" else NerfConfig(**settings)
    trainer_type = TruncatedTrainer if base == "truncated" else Trainer
    started = time.perf_counter()
    metrics = trainer_type(config, method, scene=scene).run()
    return {"row": row, "psnr": metrics["psnr"], "ssim": metrics["ssim"], "steps": metrics["steps"],
            "planned": metrics["planned_steps"], "seconds": time.perf_counter() - started,
            "train_seconds": metrics["train_seconds"], "gaussians": int(metrics.get("gaussians", 0)),
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of training of the budgeted rows")
    parser.add_argument("--rows", default=",".join(ROWS[:4]),
                        help=f"comma-separated: {', '.join(ROWS)}, or a base ({', '.join(BASES)}) with +OPTION ({', '.join(OPTIONS)})")
    parser.add_argument("--data", default=None, help="a dataset folder instead of the default scene (e.g. fern)")
    parser.add_argument("--downscale", type=int, default=1, help="with --data: load images downscaled by this factor")
    parser.add_argument("--method", default="splat", choices=("splat", "nerf"), help="what the rows train")
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    for row in rows:
        try:
            row_parts(row, args.method)
        except ValueError as error:
            parser.error(str(error))
    machine = describe()  # before the runs, and again after
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            scene = load_scene(args.data, downscale=args.downscale)
        else:
            scene = load_scene(generate_scene(Path(tmp) / "scene", resolution=args.resolution))
        for row in rows:
            results.append(run(row, scene, Path(tmp), args.steps, args.budget, args.method))
            print(results[-1], flush=True)
    scene_args = f"--data {args.data} --downscale {args.downscale}" if args.data else f"--resolution {args.resolution}"
    scene_args += f" --method {args.method}" if args.method != "splat" else ""
    print(f"\nMachine before: {machine}\nMachine after: {describe()}\n\n`python bench/bench_budget.py {scene_args} "
          f"--steps {args.steps} --budget {args.budget:g} --rows {','.join(rows)}`, {time.strftime('%Y-%m-%d')}\n")
    print("| run | test PSNR | SSIM | steps (planned) | train s | Gaussians | peak RSS |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['steps']} ({r['planned']}) | {r['train_seconds']:.0f} | "
              f"{format(r['gaussians'], ',') if r['gaussians'] else '-'} | {r['rss_gb']:.2f} GB |")


if __name__ == "__main__":
    main()
