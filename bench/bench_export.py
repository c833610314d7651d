"""Export speed: orbit-video frames per second at 512x512 and seconds to export a mesh.

    python bench/bench_export.py [--run RUN ...] [--steps 1200] [--frames 30] [--size 512] [--mesh-resolution 128]

Without ``--run`` it trains the default scene first (``render3d train --steps N``, every
registered method) in a temporary folder; then, for each run, it renders an orbit video
of ``--frames`` frames at ``--size`` x ``--size`` (rgb, H.264) and exports a TSDF mesh, and
prints one row per run.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table_header, table_row  # noqa: E402


def timed(args: list[str]) -> float:
    """Seconds one ``render3d`` command takes (run in this process, output hidden); NaN where it fails (its
    one-line error is printed above the table, e.g. no mesh from a NeRF trained too briefly)."""
    from render3d.cli import main

    start = time.perf_counter()
    code = main(args + ["--no-progress"])
    return time.perf_counter() - start if code == 0 else float("nan")


def train(method: str, steps: int, out: Path) -> Path:
    cmd = [sys.executable, "-m", "render3d", "train", "--method", method, "--steps", str(steps), "--out", str(out), "--no-progress"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="a trained run folder (repeatable); trains the default scene when omitted")
    parser.add_argument("--steps", type=int, default=1200, help="training steps when training here (default: 1200, the default recipe)")
    parser.add_argument("--frames", type=int, default=30, help="orbit frames rendered (default: 30)")
    parser.add_argument("--size", type=int, default=512, help="video width and height (default: 512)")
    parser.add_argument("--mesh-resolution", type=int, default=128, help="mesh voxels along the longest side (default: 128)")
    args = parser.parse_args()

    import torch

    from render3d.methods import METHODS
    from render3d.train import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        runs = [Path(r) for r in args.run] or [train(m, args.steps, Path(tmp) / m) for m in METHODS.names()]
        rows = []
        for run in runs:
            ckpt = load_checkpoint(run)
            fps = 30.0
            video = timed(["render", str(run), "--path", "orbit", "--fps", str(fps), "--seconds", str(args.frames / fps),
                           "--resolution", f"{args.size}x{args.size}", "--out", f"{tmp}/orbit.mp4"])
            mesh = timed(["export", str(run), "--format", "mesh", "--mesh-resolution", str(args.mesh_resolution), "--out", f"{tmp}/mesh.ply"])
            rows.append((ckpt["method"], ckpt["step"], args.frames / video, mesh))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(header(f"Device: {device}; orbit video {args.size}x{args.size}, {args.frames} frames; mesh {args.mesh_resolution} "
                 "voxels, all training views"))
    print(table_header(["method", "steps", "video fps", "mesh s"]))
    for method, steps, video_fps, mesh in rows:
        print(table_row([method, steps, f"{video_fps:.2f}", "failed" if math.isnan(mesh) else f"{mesh:.1f}"]))

if __name__ == "__main__":
    main()
