"""The zoo's comparison tables: every model trained for the same time on Fashion-MNIST and on faces, CPU.

    python bench/bench_zoo.py --budget 300                      # 5 minutes per model and data set
    python bench/bench_zoo.py --budget 60 --data fashion-mnist --models diffusion,gan
    python bench/bench_zoo.py --budget 300 --reuse              # keep finished runs made with today's defaults

Runs land in ``--out`` (default ``runs/bench-zoo/DATA/MODEL``); each data set's report
(report.md, results.json and the sample grids) in ``--report`` (default
``bench/results/zoo/DATA``). Every table row carries its steps/s and GFLOP/s beside the
GFLOP/s of a 2048x2048 float32 matmul that the trainer measured when that run started, and the
bench prints the matmul number before and after each data set too: on a shared machine the
absolute speed moves, the ratio much less. Fashion-MNIST metrics use 2,000 samples; faces have
only 80 training images, so their table uses KID and nearest-neighbour distances instead of
Fréchet distance (see the report's note).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from render3d.zoo.base import registry
from render3d.zoo.data import load_images
from render3d.zoo.perf import matmul_gflops
from render3d.zoo.report import compare, markdown_table
from render3d.zoo.train import ZooTrainConfig, ZooTrainer

SAMPLES = {"fashion-mnist": 2000, "faces": 500}  # samples per model for the metrics
REFERENCES = """Published references (binarized MNIST, NLL in nats: a different data set and likelihood, not comparable
to the 8-bit Fashion-MNIST bits/dim above; shown for orientation only):
| model | NLL (nats) | source |
|---|---|---|
| PixelCNN | 81.30 | van den Oord et al. 2016, Pixel Recurrent Neural Networks, table 4 |
| VAE | about 89.8 | as quoted in issue #6 (not re-verified here) |"""


def machine() -> str:
    """CPU model and core count, for the table's caption."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def reusable(run: Path, model: str, budget: float) -> bool:
    """True when ``run`` is a finished run of ``model`` with today's default options and the same budget."""
    import json
    from dataclasses import asdict

    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return False
    defaults = asdict(registry()[model].config_type())
    return ((run / "model.pt").is_file() and config.get("model") == model and config.get(model) == defaults
            and config.get("train", {}).get("budget") == budget and not config.get("train", {}).get("steps"))


def bench_data(data_name: str, models: list[str], budget: float, out: Path, report: Path, n_eval: int,
               n_samples: int = 0, reuse: bool = False) -> str:
    """Train every model on one data set for ``budget`` seconds and compare them; returns the table."""
    data = load_images(data_name)
    before = matmul_gflops()
    runs = []
    for name in models:
        if reuse and reusable(out / data_name / name, name, budget):
            print(f"reusing {out / data_name / name} (default options, {budget:g} s)", flush=True)
            runs.append(out / data_name / name)
            continue
        cfg = ZooTrainConfig(data=data_name, budget=budget, out=str(out / data_name / name), progress=False,
                             save_every=0, overwrite=True)
        started = time.perf_counter()
        result = ZooTrainer(name, cfg, data=data).run()
        print(f"trained {name} on {data_name}: {result['steps']} steps in {time.perf_counter() - started:.0f} s, "
              f"loss {result['loss']:.4f}", flush=True)
        runs.append(out / data_name / name)
    n = n_samples or SAMPLES.get(data_name, 500)
    result = compare(runs, report / data_name, n_samples=n, n_eval=n_eval)
    after = matmul_gflops()
    table = markdown_table(result["models"] + result["references"])
    return (f"{data_name}: {budget:g} s of training per model, {machine()}, {torch.get_num_threads()} torch threads; "
            f"metrics on {n} samples / {n_eval} held-out images; 2048x2048 float32 matmul {before:.0f} GFLOP/s before "
            f"training, {after:.0f} GFLOP/s after evaluation\n\n{table}\n\nreport: {report / data_name / 'report.md'}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per model (default: 300)")
    parser.add_argument("--models", default=",".join(registry()), help="comma-separated models (default: all)")
    parser.add_argument("--data", default="fashion-mnist,faces", help="comma-separated data sets (default: fashion-mnist,faces)")
    parser.add_argument("--out", default="runs/bench-zoo", help="folder for the runs (default: runs/bench-zoo)")
    parser.add_argument("--report", default="bench/results/zoo", help="folder for the reports (default: bench/results/zoo)")
    parser.add_argument("-n", type=int, default=0, help="samples per model for the metrics (default: 2000 for "
                        "fashion-mnist, 500 for faces; fewer makes Fréchet distances biased upwards)")
    parser.add_argument("--n-eval", type=int, default=500, help="held-out images for bits/dim and reconstructions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs in --out trained with today's default "
                        "options and the same budget (each row still shows its own steps/s and matmul GFLOP/s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    for data_name in args.data.split(","):
        print(bench_data(data_name, models, args.budget, Path(args.out), Path(args.report), args.n_eval, args.n, args.reuse), flush=True)
        if data_name == "fashion-mnist":
            print(REFERENCES + "\n", flush=True)


if __name__ == "__main__":
    main()
