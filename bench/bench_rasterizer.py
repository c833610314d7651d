"""The splat rasterisers: forward+backward steps/s of a backend, and the compiled CPU kernels against
the pure-PyTorch path they replace.

    python bench/bench_rasterizer.py --mode steps [--backend torch|cuda|auto] [--repeats 5]
    python bench/bench_rasterizer.py --mode cpu [--repeats 3] [--skip-300k] [--no-old] [--baseline-tree DIR|REV]

``--mode steps`` (the default): steps/s of forward+backward rasteriser calls for 10k and
50k Gaussians at 128x128 and 256x256 (and 100k/300k at 800x800 on CUDA), a warm-up call
and then ``--repeats`` timed ones per cell. Gaussians are random in a unit ball seen from 3
units away, sized like a mid-training 3DGS scene.

``--mode cpu``: the whole ``torch`` backend (projection, SH, compositing) on the CPU, the
compiled kernels (``new``) against the torch pair rasteriser (``old``), switched with
``RENDER3D_CPU_KERNELS``, interleaved repeat by repeat so that machine load hits both alike;
each cell is the median of the repeats (one call where a call takes over 10 s). The process
is set up as the ``render3d`` command sets it up (OpenMP wait policy, malloc). The ``raster``
columns time the compositing call alone (its forward; the rest is projection, SH and, for
fwd+bwd, every backward). Cases: forward renders of the reference PLY
(``shared/data/splat_ply``, camera framed on its Gaussians) and of 10k random Gaussians at
256/512/1024 px; forward+backward steps of 10k/50k random Gaussians at 128/256 px; a
300k-Gaussian scene at 512 px. The old path is left out where its (Gaussian, pixel) pairs
would need more than ~6 GB, or everywhere with ``--no-old``. ``--baseline-tree`` adds a
third path, ``base``: the numba rasteriser (``render3d/splat/rasterize_numba.py``) of an
older checkout, a folder or a git revision (see ``bench/common.py``), so a change to the
kernels is measured against the kernels it replaces in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("steps", "cpu"), default="steps", help="what to measure (default: steps)")
    parser.add_argument("--backend", default="torch", help="steps mode: torch, cuda or auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per cell (and path): default 5 (steps), 3 (cpu)")
    parser.add_argument("--skip-300k", action="store_true", help="cpu mode: leave out the 300k-Gaussian case")
    parser.add_argument("--no-old", action="store_true", help="cpu mode: leave out the (slow) torch pair rasteriser")
    parser.add_argument("--baseline-tree", default=None, metavar="DIR|REV",
                        help="cpu mode: also time the numba rasteriser of this older checkout (a folder or a git revision)")
    return parser


if __name__ == "__main__":
    ARGS = build_parser().parse_args()
    if ARGS.mode == "cpu":  # as the render3d command does, before torch loads (OpenMP wait policy, malloc)
        from render3d.runtime import configure_process

        configure_process()

import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

from common import baseline_checkout, header, interleaved  # noqa: E402
from render3d.backend import device_for, resolve_backend  # noqa: E402
from render3d.cameras import intrinsics_matrix, look_at  # noqa: E402
from render3d.splat.render import RasterSettings, rasterize  # noqa: E402

PLY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splat_ply" / "inria_3dgs_iter7000.ply"


def random_gaussians(n: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g)
    means = means / means.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3)
    scale = 0.6 / n ** (1 / 3)
    return {
        "means": means.to(device).requires_grad_(),
        "quats": torch.randn(n, 4, generator=g).to(device).requires_grad_(),
        "scales": (torch.rand(n, 3, generator=g) * scale + 0.2 * scale).to(device).requires_grad_(),
        "opacities": torch.rand(n, generator=g).to(device).requires_grad_(),
        "coeffs": (torch.randn(n, 16, 3, generator=g) * 0.3).to(device).requires_grad_(),
    }


def camera(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(viewmats [1, 4, 4], Ks [1, 3, 3])`` of a square view of the unit ball from 3 units away."""
    K = intrinsics_matrix(size * 1.2, size * 1.2, size / 2, size / 2)[None].to(device)
    c2w = look_at(torch.tensor([0.0, -3.0, 0.5]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    return torch.linalg.inv(c2w)[None].to(device), K


def cpu_camera(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return camera(size, torch.device("cpu"))


# ----------------------------------------------------------------------------- --mode steps


def time_step(params: dict, backend: str, size: int, repeats: int) -> float:
    """Steps/s of forward+backward rasteriser calls: one warm-up, then ``repeats`` timed."""
    device = params["means"].device
    viewmats, K = camera(size, device)
    settings = RasterSettings(packed=True)

    def step() -> None:
        rgb, depth, alpha, _ = rasterize(
            backend, params["means"], params["quats"], params["scales"], params["opacities"], params["coeffs"], 3,
            viewmats, K, size, size, settings,
        )
        (rgb.sum() + alpha.sum()).backward()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def steps_mode(args: argparse.Namespace) -> None:
    backend = resolve_backend(args.backend)
    device = device_for(backend)
    repeats = args.repeats or 5
    cases = [(10_000, 128), (10_000, 256), (50_000, 128), (50_000, 256)]
    if backend == "cuda":
        cases += [(100_000, 800), (300_000, 800)]
    print(header(f"backend {backend}, device {torch.cuda.get_device_name() if backend == 'cuda' else 'cpu'}, "
                 f"threads {torch.get_num_threads()}; forward+backward, {repeats} timed steps per cell after one warm-up"), flush=True)
    print(f"\n{'gaussians':>10} {'size':>9} {'steps/s':>9} {'ms/step':>9}")
    for n, size in cases:
        rate = time_step(random_gaussians(n, device), backend, size, repeats)
        print(f"{n:>10} {f'{size}x{size}':>9} {rate:>9.2f} {1000 / rate:>9.2f}", flush=True)


# ----------------------------------------------------------------------------- --mode cpu

PATHS = {"old": "torch", "new": "compiled", "base": "compiled"}  # the CPU kernel setting of each path
SLOW_S = 10.0  # a call slower than this is timed once
MAX_OLD_PAIRS = 60e6  # the old path holds ~100 bytes per box pixel of each Gaussian: skip it beyond this


class CpuPaths:
    """Switches the torch backend between its CPU paths, and times the compositing calls inside a render."""

    def __init__(self, baseline: Callable | None) -> None:
        import dataclasses

        from render3d.splat import kernels, rasterize_numba, render

        self.numba, self.current, self.baseline = rasterize_numba, rasterize_numba.rasterize_to_pixels_numba, baseline
        self.raster_seconds = 0.0

        def with_timed_compositing(*examples):
            chosen = kernels.splat_kernels(*examples)

            def timed_compositing(*args):
                start = time.perf_counter()
                out = chosen.composite(*args)
                self.raster_seconds += time.perf_counter() - start
                return out

            return dataclasses.replace(chosen, composite=timed_compositing)

        render.splat_kernels = with_timed_compositing

    def timed(self, fn: Callable[[], None], path: str) -> tuple[float, float]:
        """Seconds of one call of ``fn`` on ``path``, and of the compositing inside it."""
        from render3d.cpu_kernels import set_kernel_choice

        set_kernel_choice(PATHS[path])
        self.numba.rasterize_to_pixels_numba = self.baseline if path == "base" else self.current
        self.raster_seconds = 0.0
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, self.raster_seconds

    def compare(self, fn: Callable[[], None], repeats: int, paths: tuple[str, ...]) -> dict[str, tuple[float, float]]:
        """Median ``(call, compositing)`` seconds of each path over ``repeats`` interleaved calls.

        Each path gets a warm-up call first; one whose warm-up took over ``SLOW_S`` is not
        repeated: that one call is its time.
        """
        first = {p: self.timed(fn, p) for p in paths}
        times = interleaved({p: (lambda p=p: self.timed(fn, p)) for p in paths if first[p][0] <= SLOW_S}, repeats)
        times.update({p: [first[p]] for p in paths if first[p][0] > SLOW_S})
        return {p: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for p, ts in times.items()}


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


def ply_scene() -> tuple[dict, int, Callable[[int], tuple[torch.Tensor, torch.Tensor]]]:
    """The reference PLY's activated parameters, SH degree and a camera framing 90% of its Gaussians."""
    from render3d.splat.ply import load_ply

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
    from render3d.splat.project import covariance_3d, project_gaussians
    from render3d.splat.rasterize_pairs import drawable

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


def row(case: str, n: int, size: int, what: str, t: dict[str, tuple]) -> str:
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
    return " ".join(cells)


def cpu_mode(args: argparse.Namespace) -> None:
    import numba

    from render3d.cpu_kernels import ENV_VAR, kernels_enabled

    if not kernels_enabled():
        raise SystemExit(f"compiled rasteriser unavailable (numba missing, --cpu-kernels torch or {ENV_VAR}=0)")
    repeats = args.repeats or 3
    with baseline_checkout(args.baseline_tree) as tree:
        paths = CpuPaths(load_baseline(tree) if tree else None)
    base = paths.baseline is not None
    print(header(f"torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}; "
                 "old = torch pair rasteriser, new = numba tiles" + (", base = the numba tiles of --baseline-tree" if base else "")
                 + f"; ms per call (median of {repeats}); raster = compositing forward only"), flush=True)
    print(f"\n{'scene':<7} {'gauss':>7} {'px':>5} {'pass':<8} {'old ms':>9} {'new ms':>9} {'ratio':>7} "
          f"{'old rast':>9} {'new rast':>9} {'ratio':>7} {'new /s':>7}" + (f" {'base ms':>9} {'base/new':>7}" if base else ""), flush=True)

    cpu = torch.device("cpu")
    ply, ply_degree, ply_cam = ply_scene()
    rand10k = {k: v.detach() for k, v in random_gaussians(10_000, cpu).items()}
    cases = []  # (scene name, params, sh degree, camera, size, backward, repeats)
    for size in (256, 512, 1024):
        cases += [("ply", ply, ply_degree, ply_cam, size, False, repeats)]
        cases += [("random", rand10k, 3, cpu_camera, size, False, repeats)]
    for n in (10_000, 50_000):
        params = random_gaussians(n, cpu)
        cases += [("random", params, 3, cpu_camera, size, True, repeats) for size in (128, 256)]
    if not args.skip_300k:
        big = random_gaussians(300_000, cpu)
        cases += [("random", {k: v.detach() for k, v in big.items()}, 3, cpu_camera, 512, False, 1)]
        cases += [("random", big, 3, cpu_camera, 512, True, 1)]
    skipped = []
    for name, params, degree, cam, size, backward, n_repeats in cases:
        pairs = box_pixels(params, cam, size)
        run_paths = (("old",) if pairs <= MAX_OLD_PAIRS and not args.no_old else ()) + ("new",) + (("base",) if base else ())
        if pairs > MAX_OLD_PAIRS and not args.no_old:
            skipped.append(f"{name} {len(params['means'])} at {size} px: ~{pairs / 1e6:.0f}M box pixels")
        times = paths.compare(render_fn(params, degree, cam, size, backward), n_repeats, run_paths)
        print(row(name, len(params["means"]), size, "fwd+bwd" if backward else "forward", times), flush=True)
    for line in skipped:
        print(f"old path not run (over {MAX_OLD_PAIRS / 1e6:.0f}M box pixels at ~100 B each): {line}")
    print(f"numba threading layer {numba.threading_layer()}; load average at the end (1/5/15 min): {os.getloadavg()}")


if __name__ == "__main__":
    {"steps": steps_mode, "cpu": cpu_mode}[ARGS.mode](ARGS)
