"""Forward+backward speed of the splat rasterisers.

    python bench/bench_rasterizer.py [--backend torch|cuda] [--repeats 5]

Prints a table of steps/s for 10k and 50k Gaussians at 128x128 and 256x256 (and
100k/300k at 800x800 on CUDA). Gaussians are random in a unit ball seen from 3 units
away, sized like a mid-training 3DGS scene.
"""

from __future__ import annotations

import argparse
import time

import torch

from render3d.backend import device_for, resolve_backend
from render3d.cameras import intrinsics_matrix, look_at
from render3d.splat.render import RasterSettings, rasterize


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


def time_step(params: dict, backend: str, size: int, repeats: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="torch", help="torch, cuda or auto")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per cell")
    args = parser.parse_args()
    backend = resolve_backend(args.backend)
    device = device_for(backend)
    cases = [(10_000, 128), (10_000, 256), (50_000, 128), (50_000, 256)]
    if backend == "cuda":
        cases += [(100_000, 800), (300_000, 800)]
    print(f"backend {backend}, device {torch.cuda.get_device_name() if backend == 'cuda' else 'cpu'}, threads {torch.get_num_threads()}")
    print(f"{'gaussians':>10} {'size':>9} {'steps/s':>9} {'ms/step':>9}")
    for n, size in cases:
        rate = time_step(random_gaussians(n, device), backend, size, args.repeats)
        print(f"{n:>10} {f'{size}x{size}':>9} {rate:>9.2f} {1000 / rate:>9.2f}")


if __name__ == "__main__":
    main()
