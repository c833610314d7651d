"""Training throughput of the splat trainer at a fixed Gaussian count.

    python bench/bench_train_speed.py [--backend auto] [--resolution 800] [--gaussians 300000] [--steps 200]

Renders a few views of the default scene at the given resolution, starts from that many
random Gaussians with densification switched off (so the count stays fixed), and prints
steps/s over the timed steps (after a warm-up), for each requested Gaussian count.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from render3d.datasets import load_scene
from render3d.datasets.synthetic import generate_scene
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", help="auto, cuda or torch")
    parser.add_argument("--resolution", type=int, default=800, help="image size of the rendered views")
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 300_000], help="Gaussian counts to time")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per count")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scene = load_scene(generate_scene(f"{tmp}/scene", resolution=args.resolution, n_train=8, n_val=1, n_test=1))
    rows = []
    for n in args.gaussians:
        total = args.steps + args.warmup
        config = TrainConfig(steps=total, backend=args.backend, out=f"{tempfile.gettempdir()}/bench-train-speed", save_every=0, progress=False)
        # refine_start beyond the run: no densification, the count stays at n
        splat = SplatConfig(init_points=n, init_scale=0.5, refine_start=10**9, refine_stop=10**9)
        trainer = Trainer(config, splat, scene=scene)
        for _ in range(args.warmup):
            trainer.step_once()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step_once()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        rate = args.steps / (time.perf_counter() - start)
        rows.append((trainer.backend, n, args.resolution, rate))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}")
    print(f"{'backend':>8} {'gaussians':>10} {'size':>9} {'steps/s':>9}")
    for backend, n, res, rate in rows:
        print(f"{backend:>8} {n:>10} {f'{res}x{res}':>9} {rate:>9.1f}")


if __name__ == "__main__":
    main()
