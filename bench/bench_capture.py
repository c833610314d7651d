"""Real-capture faults on the default scene: changing exposure, and camera poses that are a little off.

    python bench/bench_capture.py [--case exposure|poses|all] [--steps 1200] [--resolution 128]

``exposure``: each training image is multiplied by a random exposure in [0.6, 1.5] and a
white-balance factor per channel in [0.95, 1.05] (seeded), then clipped to [0, 1]; test images
are left as rendered. Runs: clean images; changed images; changed images with
``--splat.appearance exposure``.

``poses``: each training camera is turned by 1 degree about a random axis and moved by 2% of
the scene scale in a random direction (seeded); test cameras are exact. Runs: clean poses;
disturbed poses; disturbed poses with ``--splat.pose-opt``. The camera error columns compare the
poses training ends with (refined where pose-opt is on) against the clean ones.

All runs use the default splat recipe, the same steps and the same seed, and print one table:
test PSNR / SSIM at the given test poses, camera errors, seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe  # noqa: E402

from render3d.datasets import load_scene  # noqa: E402
from render3d.datasets.synthetic import generate_scene  # noqa: E402
from render3d.pose_correction import pose_changes, so3_exp  # noqa: E402
from render3d.splat.method import SplatConfig  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402


def change_exposure(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` images, each scaled by its own exposure and white balance (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    exposure = 0.6 + 0.9 * torch.rand(n, 1, 1, 1, generator=generator)
    balance = 0.95 + 0.1 * torch.rand(n, 1, 1, 3, generator=generator)
    return (images.float() * exposure * balance).clamp(0, 255).round().to(torch.uint8)


def disturb_poses(c2w: torch.Tensor, distance: float, degrees: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Camera-to-world ``[N, 4, 4]``, each turned by ``degrees`` about a random axis and moved by ``distance``."""
    generator = torch.Generator().manual_seed(seed)
    n = len(c2w)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    out = c2w.clone()
    out[:, :3, :3] = out[:, :3, :3] @ so3_exp(axis * math.radians(degrees))
    out[:, :3, 3] += direction * distance
    return out


def cases(clean, which: str) -> list[tuple[str, object, SplatConfig]]:
    """(name, scene, method config) of each run of the chosen cases."""
    runs = []
    if which in ("exposure", "all"):
        changed = replace(clean, train=replace(clean.train, images=change_exposure(clean.train.images)))
        runs += [("exposure: clean images", clean, SplatConfig()), ("exposure: changed", changed, SplatConfig()),
                 ("exposure: changed, --splat.appearance exposure", changed, SplatConfig(appearance="exposure"))]
    if which in ("poses", "all"):
        cameras = clean.train.cameras
        moved = replace(cameras, c2w=disturb_poses(cameras.c2w, 0.02 * float(clean.scene_scale)))
        disturbed = replace(clean, train=replace(clean.train, cameras=moved))
        runs += [("poses: clean", clean, SplatConfig()), ("poses: disturbed", disturbed, SplatConfig()),
                 ("poses: disturbed, --splat.pose-opt", disturbed, SplatConfig(pose_opt=True))]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="all", choices=("exposure", "poses", "all"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clean = load_scene(generate_scene(Path(tmp) / "scene", resolution=args.resolution))
        truth = clean.train.cameras.c2w
        for index, (name, scene, method_config) in enumerate(cases(clean, args.case)):
            config = TrainConfig(steps=args.steps, out=str(Path(tmp) / f"run{index}"), save_every=0, progress=False)
            start = time.perf_counter()
            trainer = Trainer(config, method_config, scene=scene)
            metrics = trainer.run()
            refined = trainer.method.refined_train_cameras()
            final = (refined if refined is not None else scene.train.cameras).c2w
            degrees, distances = pose_changes(final.double(), truth.double())
            rows.append((name, metrics["psnr"], metrics["ssim"], float(degrees.mean()),
                         100 * float(distances.mean()) / float(clean.scene_scale), time.perf_counter() - start))
            print(rows[-1], flush=True)
    print(f"\nMachine: {describe()}\n\n`python bench/bench_capture.py --case {args.case} --steps {args.steps} "
          f"--resolution {args.resolution}`, {time.strftime('%Y-%m-%d')}\n")
    print("| run | test PSNR | test SSIM | camera error | seconds |\n|---|---|---|---|---|")
    for name, psnr, ssim, degrees, percent, seconds in rows:
        print(f"| {name} | {psnr:.2f} dB | {ssim:.3f} | {degrees:.3f}°, {percent:.2f}% of the scene scale | {seconds:.0f} |")


if __name__ == "__main__":
    main()
