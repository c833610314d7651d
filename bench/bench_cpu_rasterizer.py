"""The compiled CPU rasteriser against the torch pair rasteriser it replaces, in one run.

    python bench/bench_cpu_rasterizer.py [--repeats 3] [--skip-300k] [--baseline-tree DIR]

Both paths run the whole ``torch`` backend (projection, SH, compositing), switched with
``RENDER3D_CPU_KERNELS``, interleaved repeat by repeat so that machine load hits both alike;
each cell is the median of the repeats (one call where a call takes over 10 s). The
``raster`` columns time the compositing call alone (its forward; the rest is projection, SH
and, for fwd+bwd, every backward). Cases: forward renders of the reference PLY
(``shared/data/splat_ply``, camera framed on its Gaussians) and of 10k random Gaussians at
256/512/1024 px; forward+backward steps of 10k/50k random Gaussians at 128/256 px; a
300k-Gaussian scene at 512 px. The old path is left out where its (Gaussian, pixel) pairs
would need more than ~6 GB. ``--baseline-tree DIR`` adds a third path, ``base``: the numba
rasteriser of an older checkout (``DIR/render3d/splat/rasterize_numba.py``, e.g.
``git archive COMMIT | tar -x -C DIR``), so a change to the kernels is measured against
the kernels it replaces in the same run.
"""

from __future__ import annotations

from render3d.runtime import configure_process

configure_process()  # as the render3d command does, before torch loads (OpenMP wait policy, malloc)

import argparse
import hashlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numba
import torch

from bench_rasterizer import camera, random_gaussians
from render3d.cameras import intrinsics_matrix, look_at
from render3d.splat.ply import load_ply
from render3d.splat.project import covariance_3d, project_gaussians
from render3d.splat.rasterize_pairs import drawable
from render3d.splat.rasterize_cpu import ENV_VAR, compiled_rasterizer_enabled
from render3d.splat import rasterize_numba, render
from render3d.splat.render import rasterize

PLY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splat_ply" / "inria_3dgs_iter7000.ply"
PATHS = {"old": "0", "new": "1", "base": "1"}  # RENDER3D_CPU_KERNELS value of each path
SLOW_S = 10.0  # a call slower than this is timed once
MAX_OLD_PAIRS = 60e6  # the old path holds ~100 bytes per box pixel of each Gaussian: skip it beyond this
RASTER_SECONDS = [0.0]  # time inside the compositing calls, since the last reset
CURRENT_KERNELS = rasterize_numba.rasterize_to_pixels_numba
BASELINE_KERNELS: list[Callable] = []  # the older checkout's rasterize_to_pixels_numba, with --baseline-tree


def load_baseline(tree: Path) -> Callable:
    """``rasterize_to_pixels_numba`` of the checkout in ``tree``, loaded beside this one's."""
    file = tree / "render3d" / "splat" / "rasterize_numba.py"
    if not file.is_file():
        raise SystemExit(f"--baseline-tree {tree}: no {file.relative_to(tree)} there")
    # numba caches compiled kernels beside their source, keyed by path and re-imported by module
    # name; a copy under its own name keeps that cache apart from the tree's own module's
    source = file.read_bytes()
    copy = Path(tempfile.gettempdir()) / f"render3d-bench-baseline-{hashlib.sha256(source).hexdigest()[:16]}" / "baseline_rasterize_numba.py"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source)
    spec = importlib.util.spec_from_file_location("baseline_rasterize_numba", copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.rasterize_to_pixels_numba


def _timed_compositing(*args):
    start = time.perf_counter()
    out = _COMPOSITE(*args)
    RASTER_SECONDS[0] += time.perf_counter() - start
    return out


_COMPOSITE, render.rasterize_to_pixels = render.rasterize_to_pixels, _timed_compositing


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


@torch.no_grad()
def box_pixels(params: dict, cam, size: int) -> float:
    """Pixels in the Gaussians' boxes summed over Gaussians: the old path's pair count, about."""
    viewmats, K = cam(size)
    proj = project_gaussians(params["means"], covariance_3d(params["quats"], params["scales"]), viewmats, K, size, size)
    visible, extent = drawable(proj.conics[0], params["opacities"], proj.radii[0])
    return float(((2 * extent[visible] + 1).clamp(max=size).prod(dim=-1)).sum())


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


def timed(fn: Callable[[], None], path: str) -> tuple[float, float]:
    """Seconds of one call of ``fn`` on ``path``, and of the compositing inside it."""
    os.environ[ENV_VAR] = PATHS[path]
    rasterize_numba.rasterize_to_pixels_numba = BASELINE_KERNELS[0] if path == "base" else CURRENT_KERNELS
    RASTER_SECONDS[0] = 0.0
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, RASTER_SECONDS[0]


def compare(fn: Callable[[], None], repeats: int, paths: tuple[str, ...] = ("old", "new")) -> dict[str, tuple]:
    """Median ``(call, compositing)`` seconds of each path over ``repeats`` interleaved calls.

    Each path gets a warm-up call first; one whose warm-up took over ``SLOW_S`` is not
    repeated: that one call is its time.
    """
    first = {p: timed(fn, p) for p in paths}
    times = {p: [first[p]] if first[p][0] > SLOW_S else [] for p in paths}
    for _ in range(repeats):
        for p in paths:
            if first[p][0] <= SLOW_S:
                times[p].append(timed(fn, p))
    return {p: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for p, ts in times.items()}


def row(case: str, n: int, size: int, what: str, t: dict[str, tuple]) -> None:
    (new, new_raster), old = t["new"], t.get("old")
    cells = [f"{case:<7} {n:>7} {size:>5} {what:<8}"]
    cells.append(f"{old[0] * 1000:9.1f}" if old else f"{'-':>9}")
    cells.append(f"{new * 1000:9.1f}")
    cells.append(f"{old[0] / new:6.1f}x" if old else f"{'-':>7}")
    cells.append(f"{old[1] * 1000:9.1f}" if old else f"{'-':>9}")
    cells.append(f"{new_raster * 1000:9.1f}")
    cells.append(f"{old[1] / new_raster:6.1f}x" if old else f"{'-':>7}")
    cells.append(f"{1 / new:7.2f}")
    if "base" in t:
        cells.append(f"{t['base'][0] * 1000:9.1f}")
        cells.append(f"{t['base'][0] / new:6.2f}x")
    print(" ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path and cell")
    parser.add_argument("--skip-300k", action="store_true", help="leave out the 300k-Gaussian case")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="also time the numba rasteriser of this older checkout")
    parser.add_argument("--no-old", action="store_true", help="leave out the (slow) torch rasteriser")
    args = parser.parse_args()
    if args.baseline_tree:
        BASELINE_KERNELS.append(load_baseline(args.baseline_tree))
    if not compiled_rasterizer_enabled():
        raise SystemExit(f"compiled rasteriser unavailable (numba missing or {ENV_VAR}=0)")
    cpu = torch.device("cpu")
    print(f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}")
    print("old = torch pair rasteriser, new = numba tiles" + (", base = the numba tiles of --baseline-tree" if BASELINE_KERNELS else "")
          + "; ms per call (median); raster = compositing forward only")
    print(f"{'scene':<7} {'gauss':>7} {'px':>5} {'pass':<8} {'old ms':>9} {'new ms':>9} {'ratio':>7} "
          f"{'old rast':>9} {'new rast':>9} {'ratio':>7} {'new /s':>7}" + (f" {'base ms':>9} {'base/new':>7}" if BASELINE_KERNELS else ""))

    ply, ply_degree, ply_cam = ply_scene()
    rand10k = {k: v.detach() for k, v in random_gaussians(10_000, cpu).items()}
    cases = []  # (scene name, params, sh degree, camera, size, backward, repeats)
    for size in (256, 512, 1024):
        cases += [("ply", ply, ply_degree, ply_cam, size, False, args.repeats)]
        cases += [("random", rand10k, 3, camera_fn(), size, False, args.repeats)]
    for n in (10_000, 50_000):
        params = random_gaussians(n, cpu)
        cases += [("random", params, 3, camera_fn(), size, True, args.repeats) for size in (128, 256)]
    if not args.skip_300k:
        big = random_gaussians(300_000, cpu)
        cases += [("random", {k: v.detach() for k, v in big.items()}, 3, camera_fn(), 512, False, 1)]
        cases += [("random", big, 3, camera_fn(), 512, True, 1)]
    skipped = []
    for name, params, degree, cam, size, backward, repeats in cases:
        pairs = box_pixels(params, cam, size)
        paths = (("old",) if pairs <= MAX_OLD_PAIRS and not args.no_old else ()) + ("new",) + (("base",) if BASELINE_KERNELS else ())
        if pairs > MAX_OLD_PAIRS and not args.no_old:
            skipped.append(f"{name} {len(params['means'])} at {size} px: ~{pairs / 1e6:.0f}M box pixels")
        times = compare(render_fn(params, degree, cam, size, backward), repeats, paths)
        row(name, len(params["means"]), size, "fwd+bwd" if backward else "forward", times)
    for line in skipped:
        print(f"old path not run (over {MAX_OLD_PAIRS / 1e6:.0f}M box pixels at ~100 B each): {line}")
    print(f"numba threading layer {numba.threading_layer()}; load average at the end (1/5/15 min): {os.getloadavg()}")


def camera_fn() -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    return lambda size: camera(size, torch.device("cpu"))


if __name__ == "__main__":
    main()
