"""The compiled CPU rasteriser against the torch pair rasteriser it replaces, in one run.

    python bench/bench_cpu_rasterizer.py [--repeats 3] [--skip-300k]

Both paths run the whole ``torch`` backend (projection, SH, compositing), switched with
``RENDER3D_CPU_KERNELS``, interleaved repeat by repeat so that machine load hits both alike;
each cell is the median of the repeats. Cases: forward renders of the reference PLY
(``shared/data/splat_ply``, camera framed on its Gaussians) and of 10k random Gaussians at
256/512/1024 px; forward+backward steps of 10k/50k random Gaussians at 128/256 px; a
300k-Gaussian scene at 512 px (the old path only where it runs in reasonable time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numba
import torch

from bench_rasterizer import camera, random_gaussians
from render3d.cameras import intrinsics_matrix, look_at
from render3d.splat.ply import load_ply
from render3d.splat.rasterize_cpu import ENV_VAR, compiled_rasterizer_enabled
from render3d.splat.render import rasterize

PLY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splat_ply" / "inria_3dgs_iter7000.ply"
PATHS = {"old": "0", "new": "1"}  # RENDER3D_CPU_KERNELS value of each path


def ply_scene() -> tuple[dict, int, Callable[[int], tuple[torch.Tensor, torch.Tensor]]]:
    """The reference PLY's activated parameters, SH degree and a camera framing 90% of its Gaussians."""
    model = load_ply(PLY)
    params = {k: v.detach() for k, v in model.activated().items()}
    center = params["means"].median(dim=0).values
    radius = float((params["means"] - center).norm(dim=-1).quantile(0.9))
    eye = center + torch.tensor([0.0, -1.0, 0.3]) / torch.tensor([0.0, -1.0, 0.3]).norm() * radius * 2.6

    def cam(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        K = intrinsics_matrix(size * 1.2, size * 1.2, size / 2, size / 2)[None]
        return torch.linalg.inv(look_at(eye, center, torch.tensor([0.0, 0.0, 1.0])))[None], K

    return params, model.active_sh_degree, cam


def render_fn(params: dict, sh_degree: int, cam, size: int, backward: bool) -> Callable[[], None]:
    viewmats, K = cam(size)

    def run() -> None:
        with torch.set_grad_enabled(backward):
            rgb, depth, alpha, _ = rasterize(
                "torch", params["means"], params["quats"], params["scales"], params["opacities"], params["coeffs"],
                sh_degree, viewmats, K, size, size,
            )
            if backward:
                (rgb.sum() + alpha.sum()).backward()

    return run


def timed(fn: Callable[[], None], path: str) -> float:
    os.environ[ENV_VAR] = PATHS[path]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(fn: Callable[[], None], repeats: int, paths: tuple[str, ...] = ("old", "new")) -> dict[str, float]:
    """Median seconds per call of each path, after one warm-up call each, interleaved."""
    times: dict[str, list[float]] = {p: [] for p in paths}
    for p in paths:
        timed(fn, p)
    for _ in range(repeats):
        for p in paths:
            times[p].append(timed(fn, p))
    return {p: statistics.median(t) for p, t in times.items()}


def row(case: str, n: int, size: int, what: str, t: dict[str, float]) -> None:
    old, new = t.get("old"), t["new"]
    old_s = f"{old * 1000:10.1f}" if old else f"{'-':>10}"
    ratio = f"{old / new:7.1f}x" if old else f"{'-':>8}"
    rate = f"{1 / old:8.2f}" if old else f"{'-':>8}"
    print(f"{case:<8} {n:>8} {size:>5} {what:<8} {old_s} {new * 1000:10.1f} {ratio} {rate} {1 / new:8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path and cell")
    parser.add_argument("--skip-300k", action="store_true", help="leave out the 300k-Gaussian case")
    args = parser.parse_args()
    if not compiled_rasterizer_enabled():
        raise SystemExit(f"compiled rasteriser unavailable (numba missing or {ENV_VAR}=0)")
    cpu = torch.device("cpu")
    print(f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, numba threads "
          f"{numba.get_num_threads()} ({numba.threading_layer() if hasattr(numba, 'threading_layer') else '?'})")
    print("old = torch pair rasteriser, new = numba tiles; ms per call (median), ratio old/new, calls/s")
    print(f"{'scene':<8} {'gauss':>8} {'px':>5} {'pass':<8} {'old ms':>10} {'new ms':>10} {'ratio':>8} {'old /s':>8} {'new /s':>8}")

    ply, ply_degree, ply_cam = ply_scene()
    rand10k = {k: v.detach() for k, v in random_gaussians(10_000, cpu).items()}
    for size in (256, 512, 1024):
        row("ply", len(ply["means"]), size, "forward", compare(render_fn(ply, ply_degree, ply_cam, size, False), args.repeats))
        row("random", 10_000, size, "forward", compare(render_fn(rand10k, 3, camera_fn(), size, False), args.repeats))
    for n in (10_000, 50_000):
        params = random_gaussians(n, cpu)
        for size in (128, 256):
            row("random", n, size, "fwd+bwd", compare(render_fn(params, 3, camera_fn(), size, True), args.repeats))
    if not args.skip_300k:
        params = {k: v.detach() for k, v in random_gaussians(300_000, cpu).items()}
        row("random", 300_000, 512, "forward", compare(render_fn(params, 3, camera_fn(), 512, False), 1))
        params = random_gaussians(300_000, cpu)
        row("random", 300_000, 512, "fwd+bwd", compare(render_fn(params, 3, camera_fn(), 512, True), 1, ("new",)))
    print(f"machine load at the end (1/5/15 min): {os.getloadavg()}")


def camera_fn() -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    return lambda size: camera(size, torch.device("cpu"))


if __name__ == "__main__":
    main()
