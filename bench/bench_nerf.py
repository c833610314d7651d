"""NeRF on the default scene: training throughput, samples per ray, test PSNR and render speed.

    python bench/bench_nerf.py [--backend auto] [--method nerf] [--steps 1200] [--seconds 300] [--paths old,new]

Trains with the Trainer's own loop (checkpoints off) until ``--steps`` or a wall-clock
budget of ``--seconds`` of training, then evaluates on the test split. On the CPU both
paths train side by side in one process, step for step (``old``: the pure-torch hash
encoding, ``RENDER3D_CPU_KERNELS=0``; ``new``: the numba kernels), so machine load hits
both alike; test views are then rendered alternately by both, at full quality and with the
viewer's preview render (moving frames). The cuda backend uses nerfacc's OccGridEstimator
(packed samples, early termination); the torch backend our occupancy-grid marcher.
"""

from __future__ import annotations

from render3d.runtime import configure_process

configure_process()  # as the render3d command does, before torch loads (OpenMP wait policy, malloc)

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table_header, table_row  # noqa: E402

from render3d.cpu_kernels import ENV_VAR  # noqa: E402
from render3d.methods import get_method  # noqa: E402
from render3d.metrics import psnr  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402

PATHS = {"old": "0", "new": "1"}  # RENDER3D_CPU_KERNELS value of each path


@dataclass
class PathRun:
    """One path's trainer and what it has measured."""

    name: str
    trainer: Trainer
    train_seconds: float = 0.0
    rays: int = 0
    samples: int = 0
    render: dict[str, list[float]] = field(default_factory=dict)  # kind -> [seconds, pixels, PSNR sum]

    def use(self) -> None:
        os.environ[ENV_VAR] = PATHS[self.name]

    def train_step(self) -> None:
        self.use()
        method = self.trainer.method
        start = time.perf_counter()
        rays = method.num_rays
        self.trainer.step_once()
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize()
        self.train_seconds += time.perf_counter() - start
        self.rays += rays
        self.samples += method.last_samples

    def render_view(self, index: int, kind: str) -> None:
        """Render test view ``index`` (``full`` or ``preview``) and add its time, pixels and PSNR."""
        self.use()
        model, test = self.trainer.method.model, self.trainer.scene.test
        cameras = test.cameras[index]
        start = time.perf_counter()
        out = model.render(cameras) if kind == "full" else model.render_preview(cameras)
        seconds = time.perf_counter() - start
        target = test.image_float(index, out.rgb.device)
        row = self.render.setdefault(kind, [0.0, 0.0, 0.0])
        row[0] += seconds
        row[1] += cameras.width * cameras.height
        row[2] += psnr(out.rgb[0], target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", help="auto, cuda or torch")
    parser.add_argument("--method", default="nerf", help="nerf or vanilla-nerf")
    parser.add_argument("--steps", type=int, default=1200, help="training steps (also sets the learning-rate schedule)")
    parser.add_argument("--seconds", type=float, default=1e9, help="stop earlier after this much training time per path")
    parser.add_argument("--target-samples", type=int, default=None, help="field samples per step (nerf)")
    parser.add_argument("--data", default=None, help="dataset folder (default scene when omitted)")
    parser.add_argument("--downscale", type=int, default=1, help="image downscale factor")
    parser.add_argument("--paths", default=None, help="old,new (CPU default) or new (CUDA default)")
    args = parser.parse_args()

    entry = get_method(args.method)
    runs: list[PathRun] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in (args.paths or "old,new").split(","):
            os.environ[ENV_VAR] = PATHS[name]
            method_config = entry.config_type()
            if args.target_samples and hasattr(method_config, "target_samples"):
                method_config.target_samples = args.target_samples
            config = TrainConfig(data=args.data, method=args.method, backend=args.backend, steps=args.steps, out=f"{tmp}/{name}",
                                 save_every=0, progress=False, downscale=args.downscale)
            runs.append(PathRun(name, Trainer(config, method_config)))
        if args.paths is None and runs[0].trainer.device.type == "cuda":
            runs = runs[1:]  # the compiled CPU kernels do not run on a GPU
        while any(r.trainer.step < args.steps and r.train_seconds < args.seconds for r in runs):
            for r in runs:
                if r.trainer.step < args.steps and r.train_seconds < args.seconds:
                    r.train_step()
        for index in range(len(runs[0].trainer.scene.test)):
            for kind in ("full", "preview"):
                for r in runs:
                    r.render_view(index, kind)
    trainer = runs[0].trainer
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "CPU"
    views = len(trainer.scene.test)
    print(header(f"Device: {device}; scene: {trainer.scene.root}, {views} test views of {trainer.scene.test.cameras.width}x"
                 f"{trainer.scene.test.cameras.height}"))
    print(table_header(["path", "method", "backend", "steps", "train s", "train rays/s", "samples/ray", "test PSNR",
                        "render rays/s", "preview rays/s", "preview PSNR"]))
    for r in runs:
        full, preview = r.render["full"], r.render["preview"]
        print(table_row([r.name, args.method, r.trainer.backend, r.trainer.step, f"{r.train_seconds:.1f}",
                         f"{r.rays / r.train_seconds:.0f}", f"{r.samples / max(r.rays, 1):.1f}", f"{full[2] / views:.2f}",
                         f"{full[1] / full[0]:.0f}", f"{preview[1] / preview[0]:.0f}", f"{preview[2] / views:.2f}"]))

if __name__ == "__main__":
    main()
