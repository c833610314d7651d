"""NeRF on the default scene: training throughput, samples per ray, test PSNR and render speed.

    python bench/bench_nerf.py [--backend auto] [--method nerf] [--seconds 300] [--target-samples 32768]

Trains for a wall-clock budget (the Trainer's own loop, checkpoints off), then evaluates
on the test split. The cuda backend uses nerfacc's OccGridEstimator (packed samples,
early termination); the torch backend our occupancy-grid marcher (dense samples, the grid
estimates the transmittance to skip samples behind surfaces).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from render3d.methods import get_method
from render3d.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", help="auto, cuda or torch")
    parser.add_argument("--method", default="nerf", help="nerf or vanilla-nerf")
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget")
    parser.add_argument("--max-steps", type=int, default=20000, help="step limit (sets the learning-rate schedule)")
    parser.add_argument("--target-samples", type=int, default=None, help="field samples per step (nerf)")
    parser.add_argument("--data", default=None, help="dataset folder (default scene when omitted)")
    parser.add_argument("--downscale", type=int, default=1, help="image downscale factor")
    args = parser.parse_args()

    entry = get_method(args.method)
    method_config = entry.config_type()()
    if args.target_samples and hasattr(method_config, "target_samples"):
        method_config.target_samples = args.target_samples
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=args.data, method=args.method, backend=args.backend, steps=args.max_steps, out=tmp,
                             save_every=0, progress=False, downscale=args.downscale)
        trainer = Trainer(config, method_config)
        rays = samples = 0
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds and trainer.step < args.max_steps:
            rays += trainer.method.num_rays
            trainer.train_one_step()
            samples += trainer.method.last_samples
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        eval_start = time.perf_counter()
        result = trainer.evaluate("test", write_images=False)
        pixels = result["views"] * trainer.scene.test.cameras.width * trainer.scene.test.cameras.height
        render_rate = pixels / (time.perf_counter() - eval_start)
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "cpu"
    print(f"device: {device}, scene: {trainer.scene.root}")
    print(f"{'method':>12} {'backend':>8} {'steps':>6} {'seconds':>8} {'train rays/s':>13} {'samples/ray':>12} {'test PSNR':>10} {'render rays/s':>14}")
    print(f"{args.method:>12} {trainer.backend:>8} {trainer.step:>6} {seconds:>8.1f} {rays / seconds:>13.0f} "
          f"{samples / max(rays, 1):>12.1f} {result['psnr']:>10.2f} {render_rate:>14.0f}")


if __name__ == "__main__":
    main()
