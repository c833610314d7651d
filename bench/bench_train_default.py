"""The default job: ``render3d train`` on the bundled scene, timed end to end.

    python bench/bench_train_default.py [--steps 1200] [--backend auto]

Runs the CLI in a subprocess (scene generation included the first time, cached after),
then prints wall time, training time, test PSNR / SSIM and the Gaussian count.
Targets on a 2-core CPU: under 180 s wall, at least 28 dB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="override the default step count")
    parser.add_argument("--backend", default="auto", help="auto, cuda or torch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "render3d", "train", "--out", f"{tmp}/run", "--backend", args.backend, "--no-progress"]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    print(f"{'backend':>8} {'steps':>6} {'wall s':>7} {'train s':>8} {'PSNR':>6} {'SSIM':>6} {'depth MAE':>10} {'gaussians':>10}")
    print(f"{m['backend']:>8} {m['steps']:>6} {wall:>7.1f} {m['train_seconds']:>8.1f} {m['psnr']:>6.2f} {m['ssim']:>6.3f} "
          f"{m.get('depth_mae', float('nan')):>10.4f} {int(m['gaussians']):>10}")


if __name__ == "__main__":
    main()
