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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table_header, table_row  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--method", default="splat")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--terms", nargs="*", default=["", "depth:0.1", "mask:0.1", "depth:0.1,mask:0.1"],
                        help="one --loss spec per row ('' = no term)")
    args = parser.parse_args()
    print(header(f"{args.method} on the default scene, backend {args.backend}") + "\n")
    print(table_header(["--loss", "steps", "train s", "PSNR", "SSIM", "depth MAE", "Gaussians"]))
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.terms):
            out = Path(tmp) / f"run{i}"
            cmd = [sys.executable, "-m", "render3d", "train", "--method", args.method, "--steps", str(args.steps), "--out", str(out),
                   "--backend", args.backend, "--no-progress", "--loss", spec]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            m = json.loads((out / "metrics.json").read_text())
            print(table_row([spec or "none", m["steps"], f"{m['train_seconds']:.1f}", f"{m['psnr']:.2f}", f"{m['ssim']:.3f}",
                             f"{m.get('depth_mae', float('nan')):.4f}", int(m["gaussians"]) if "gaussians" in m else "-"]),
                  flush=True)


if __name__ == "__main__":
    main()
