"""Per-image exposure in training (``--splat.appearance exposure``) on captures whose exposure changes.

    python bench/bench_appearance.py [--steps 1200] [--resolution 128]

The default scene's training images are each multiplied by a random exposure in
[0.6, 1.5] and a white-balance factor per channel in [0.95, 1.05] (seeded), then clipped to
[0, 1]; the test images are left as rendered. Three runs of the default splat recipe, same
steps: on the clean images, on the changed images as they are, and on the changed images
with ``--splat.appearance exposure``. Prints test PSNR / SSIM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from render3d.datasets import load_scene  # noqa: E402
from render3d.datasets.synthetic import generate_scene  # noqa: E402
from render3d.splat.method import SplatConfig  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402


def change_exposure(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` images, each scaled by its own exposure and white balance (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    exposure = 0.6 + 0.9 * torch.rand(n, 1, 1, 1, generator=generator)
    balance = 0.95 + 0.1 * torch.rand(n, 1, 1, 3, generator=generator)
    return (images.float() * exposure * balance).clamp(0, 255).round().to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clean = load_scene(generate_scene(Path(tmp) / "scene", resolution=args.resolution))
        changed = replace(clean, train=replace(clean.train, images=change_exposure(clean.train.images)))
        rows = []
        for name, scene, appearance in (("clean images", clean, "none"), ("changed exposure", changed, "none"),
                                        ("changed exposure, --splat.appearance exposure", changed, "exposure")):
            config = TrainConfig(steps=args.steps, out=str(Path(tmp) / name.replace(" ", "_")), save_every=0, progress=False)
            start = time.perf_counter()
            metrics = Trainer(config, SplatConfig(appearance=appearance), scene=scene).run()
            rows.append((name, metrics["psnr"], metrics["ssim"], time.perf_counter() - start))
            print(rows[-1], flush=True)
    print(f"\nMachine: {describe()}\n\n`python bench/bench_appearance.py --steps {args.steps} --resolution {args.resolution}`, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| training images | test PSNR | test SSIM | seconds |\n|---|---|---|---|")
    for name, psnr, ssim, seconds in rows:
        print(f"| {name} | {psnr:.2f} dB | {ssim:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
