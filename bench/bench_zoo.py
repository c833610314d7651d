"""The zoo's comparison table on Fashion-MNIST: each model trained for the same time budget, CPU.

    python bench/bench_zoo.py --budget 60 --out runs/bench-zoo      # seconds of training per model

Prints the table of `render3d zoo compare` (report.md and sample grids land in OUT/report),
followed by published reference numbers. Those references are for *binarized MNIST* in nats
(a different data set and likelihood), shown only for orientation.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from render3d.zoo.base import registry
from render3d.zoo.data import load_images
from render3d.zoo.report import compare, markdown_table
from render3d.zoo.train import ZooTrainConfig, ZooTrainer

REFERENCES = """Published references (binarized MNIST, NLL in nats: a different data set and likelihood, not comparable
to the 8-bit Fashion-MNIST bits/dim above; shown for orientation only):
| model | NLL (nats) | source |
|---|---|---|
| PixelCNN | 81.30 | van den Oord et al. 2016, Pixel Recurrent Neural Networks, table 4 |
| VAE | about 89.8 | as quoted in issue #6 (not re-verified here) |"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model (default: 120)")
    parser.add_argument("--models", default=",".join(registry()), help="comma-separated models (default: all)")
    parser.add_argument("--out", default="runs/bench-zoo", help="folder for runs and the report")
    parser.add_argument("-n", type=int, default=500, help="samples per model for the metrics (default: 500)")
    parser.add_argument("--n-eval", type=int, default=500, help="held-out images for bits/dim and reconstructions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = load_images("fashion-mnist")
    runs = []
    for name in args.models.split(","):
        cfg = ZooTrainConfig(data="fashion-mnist", steps=10**9, budget=args.budget, out=str(out / name), progress=False, save_every=0)
        started = time.perf_counter()
        result = ZooTrainer(name, cfg, data=data).run()
        print(f"trained {name}: {result['steps']} steps in {time.perf_counter() - started:.0f} s, loss {result['loss']:.4f}", flush=True)
        runs.append(out / name)
    report = compare(runs, out / "report", n_samples=args.n, n_eval=args.n_eval)
    print(f"\nFashion-MNIST, {args.budget:g} s of training per model, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; metrics on {args.n} samples / {args.n_eval} held-out images\n")
    print(markdown_table(report["models"] + report["references"]))
    print(f"\nreport: {out / 'report' / 'report.md'}\n\n{REFERENCES}")


if __name__ == "__main__":
    main()
