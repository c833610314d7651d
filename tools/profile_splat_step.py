"""Where a CPU splat training step's time goes, stage by stage, torch code and compiled kernels.

    python tools/profile_splat_step.py [--warmup 30] [--repeats 9] [--data FOLDER --downscale N]

Trains the default scene (or ``--data``, e.g. fern with ``--downscale 8``; torch backend) for a few steps, then times each stage of a step
forward+backward on its own: 3D covariance and EWA projection, SH colours and the
rasteriser (each as torch code, ``old``, and numba kernels, ``new``: the two kernel sets of
``render3d/splat/kernels.py``), the loss (L1 + SSIM), Adam, and a whole training step.
Runs on one thread (torch and numba) and reports CPU time, best of ``--repeats``: on a
shared machine that is the number that holds still; the shares are what to read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Callable

import numba
import torch
import torch.nn.functional as F

from render3d.metrics import ssim
from render3d.splat.method import SplatConfig
from render3d.cpu_kernels import set_kernel_choice
from render3d.splat.kernels import COMPILED_KERNELS, TORCH_KERNELS, SplatKernels
from render3d.train import TrainConfig, Trainer


def cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best-of-``repeats`` CPU milliseconds of ``fn()``."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=30, help="training steps before timing")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per stage")
    parser.add_argument("--data", default=None, help="a dataset folder (default: the bundled default scene)")
    parser.add_argument("--downscale", type=int, default=1, help="load the dataset's images downscaled by this factor")
    args = parser.parse_args()
    torch.set_num_threads(1)
    numba.set_num_threads(1)

    config = TrainConfig(data=args.data, downscale=args.downscale, steps=1200, backend="torch", out=tempfile.mkdtemp(), save_every=0, progress=False)
    trainer = Trainer(config, SplatConfig())
    for _ in range(args.warmup):
        trainer.step_once()
    model = trainer.method.model
    camera = trainer.scene.train.cameras[0]
    target = trainer.scene.train.image_float(0, torch.device("cpu"))
    width, height, viewmats, Ks = camera.width, camera.height, camera.viewmats, camera.K
    leaf = {k: v.detach().clone().requires_grad_() for k, v in model.activated().items()}
    centers = torch.linalg.inv(viewmats)[:, :3, 3]
    degree = model.active_sh_degree

    def projection(kernels: SplatKernels) -> None:
        proj = kernels.project(leaf["means"], leaf["quats"], leaf["scales"], viewmats, Ks, width, height)
        (proj.means2d.sum() + proj.conics.sum() + proj.depths.sum()).backward()

    def colors(kernels: SplatKernels) -> None:
        kernels.colors(leaf["means"], leaf["coeffs"], degree, centers).sum().backward()

    with torch.no_grad():
        proj = TORCH_KERNELS.project(leaf["means"], leaf["quats"], leaf["scales"], viewmats, Ks, width, height)
        feats = torch.cat([TORCH_KERNELS.colors(leaf["means"], leaf["coeffs"], degree, centers)[0], proj.depths[0, :, None]], -1)
    raster_in = [t.clone().requires_grad_() for t in (proj.means2d[0], proj.conics[0], feats, leaf["opacities"])]

    def rasterizer(kernels: SplatKernels) -> None:
        img, alpha = kernels.composite(*raster_in, proj.depths[0], proj.radii[0], width, height)
        (img.sum() + alpha.sum()).backward()

    rgb = (target * 0.9 + 0.05).requires_grad_()

    def loss() -> None:  # the splat trainer's default: 0.8 L1 + 0.2 (1 - SSIM)
        (0.8 * F.l1_loss(rgb, target) + 0.2 * (1 - ssim(rgb, target))).backward()

    params = [p.detach().clone().requires_grad_() for p in model.params.values()]
    optimizers = [torch.optim.Adam([p], lr=1e-3, eps=1e-15) for p in params]

    def adam() -> None:
        for p, opt in zip(params, optimizers):
            p.grad = torch.ones_like(p)
            opt.step()

    rows = []
    for label, kernels in (("new", COMPILED_KERNELS), ("old", TORCH_KERNELS)):
        set_kernel_choice(kernels.name)
        rows.append((f"covariance + projection fwd+bwd ({label})", cpu_ms(lambda: projection(kernels), args.repeats)))
        rows.append((f"SH colours (degree {degree}) fwd+bwd ({label})", cpu_ms(lambda: colors(kernels), args.repeats)))
        rows.append((f"rasteriser fwd+bwd ({label})", cpu_ms(lambda: rasterizer(kernels), args.repeats)))
        rows.append((f"whole training step ({label})", cpu_ms(trainer.train_one_step, args.repeats)))
    set_kernel_choice(None)
    rows += [
        ("loss (L1 + SSIM) fwd+bwd", cpu_ms(loss, args.repeats)),
        ("Adam, 6 parameter groups", cpu_ms(adam, args.repeats)),
    ]
    step = dict(rows)["whole training step (new)"]
    print(f"{model.num_gaussians} Gaussians, {width}x{height} px, 1 thread; CPU ms, best of {args.repeats}; "
          f"share of the new step; old step / new step = {dict(rows)['whole training step (old)'] / step:.2f}x")
    for name, ms in rows:
        print(f"  {name:<46} {ms:8.1f}  {100 * ms / step:5.0f}%")


if __name__ == "__main__":
    main()
