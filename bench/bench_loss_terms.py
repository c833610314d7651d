"""Loss terms on the default scene: test PSNR and depth error with and without each term.

    python bench/bench_loss_terms.py [--steps 1200] [--terms "" depth:0.1 mask:0.1 depth:0.1,mask:0.1] [--method splat]

Runs ``render3d train --loss TERMS`` on the bundled scene once per row (same seed, same
machine, one after the other) and prints a table: steps, training seconds, test PSNR,
SSIM, mean absolute z-depth error on the test views (scene units; the scene is about
2 units across) and, for splats, the Gaussian count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--method", default="splat")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--terms", nargs="*", default=["", "depth:0.1", "mask:0.1", "depth:0.1,mask:0.1"],
                        help="one --loss spec per row ('' = no term)")
    args = parser.parse_args()
    print(f"{'--loss':>22} {'steps':>6} {'train s':>8} {'PSNR':>6} {'SSIM':>6} {'depth MAE':>10} {'gaussians':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.terms):
            out = Path(tmp) / f"run{i}"
            cmd = [sys.executable, "-m", "render3d", "train", "--method", args.method, "--steps", str(args.steps), "--out", str(out),
                   "--backend", args.backend, "--no-progress", "--loss", spec]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            m = json.loads((out / "metrics.json").read_text())
            gaussians = f"{int(m['gaussians']):>10}" if "gaussians" in m else f"{'-':>10}"
            print(f"{spec or 'none':>22} {m['steps']:>6} {m['train_seconds']:>8.1f} {m['psnr']:>6.2f} {m['ssim']:>6.3f} "
                  f"{m.get('depth_mae', float('nan')):>10.4f} {gaussians}", flush=True)


if __name__ == "__main__":
    main()
