"""The zoo on CPU: every model trained for the same time on Fashion-MNIST and on faces, and each model's training-step speed.

    python bench/bench_zoo.py --mode compare [--budget 300] [--data fashion-mnist,faces] [--models ae,vae,...] [--reuse]
    python bench/bench_zoo.py --mode speed [--threads 1,2] [--steps 6] [--baseline-tree DIR|REV]

``--mode compare`` (the default): the comparison tables, every model trained for ``--budget``
seconds (300: 5 minutes per model and data set; e.g. ``--budget 60 --data fashion-mnist
--models diffusion,gan`` for a quick look; ``--reuse`` keeps finished runs made with today's
defaults and the same budget). Runs land in ``--out`` (default
``runs/bench-zoo/DATA/MODEL``); each data set's report (report.md, results.json and the
sample grids) in ``--report`` (default ``bench/results/zoo/DATA``). Every table row carries
its steps/s and GFLOP/s beside the GFLOP/s of a 2048x2048 float32 matmul that the trainer
measured when that run started, and the bench prints the matmul number before and after each
data set too: on a shared machine the absolute speed moves, the ratio much less.
Fashion-MNIST metrics use 2,000 samples; faces have only 80 training images, so their table
uses KID and nearest-neighbour distances instead of Fréchet distance (see the report's note).

``--mode speed``: each model takes steps on a fixed Fashion-MNIST-shaped batch (64 x 1 x 28 x
28, labels for the models that use them) with its default options, in a fresh subprocess per
thread count and precision. A row reports the FLOPs of one step (matrix products and convolutions, forward
and backward), the best and median of ``--steps`` step times, steps/s and GFLOP/s (from the
best), and the GFLOP/s of a 2048x2048 float32 matmul measured just before the row: on a
shared machine the absolute numbers move, their ratio much less. CPU seconds per step are
printed too (on an oversubscribed machine wall time is several times CPU time).
``--baseline-tree DIR|REV`` measures an older checkout (a folder, or a git revision exported
to a temporary folder; see ``bench/common.py``) the same way first, with its default options
in float32, so both versions are timed in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
# only the standard library and common at the top: the speed mode imports this module against older checkouts too
from common import baseline_checkout, baseline_label, describe, header, matmul_gflops, python_code_in, table_header  # noqa: E402

SPEED_MODELS = "ae,vae,vqvae,pixelcnn,gan,diffusion"  # the speed table's order (compare: the registry's)
SAMPLES = {"fashion-mnist": 2000, "faces": 500}  # samples per model for the metrics
REFERENCES = """Published references (binarized MNIST, NLL in nats: a different data set and likelihood, not comparable
to the 8-bit Fashion-MNIST bits/dim above; shown for orientation only):
| model | NLL (nats) | source |
|---|---|---|
| PixelCNN | 81.30 | van den Oord et al. 2016, Pixel Recurrent Neural Networks, table 4 |
| VAE | about 89.8 | as quoted in issue #6 (not re-verified here) |"""


# ----------------------------------------------------------------------------- --mode compare


def reusable(run: Path, model: str, budget: float) -> bool:
    """True when ``run`` is a finished run of ``model`` with today's default options and the same budget."""
    from dataclasses import asdict

    from render3d.zoo.base import registry

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
    from render3d.zoo.data import load_images
    from render3d.zoo.report import compare, markdown_table
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

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
    return (f"{data_name}: {budget:g} s of training per model, {describe(matmul=False)}; "
            f"metrics on {n} samples / {n_eval} held-out images; 2048x2048 float32 matmul {before:.0f} GFLOP/s before "
            f"training, {after:.0f} GFLOP/s after evaluation\n\n{table}\n\nreport: {report / data_name / 'report.md'}\n")


def compare_mode(args: argparse.Namespace) -> None:
    import torch

    threads = [int(t) for t in (args.threads or "0").split(",")]
    if len(threads) != 1:
        raise SystemExit("--mode compare takes one --threads count")
    if threads[0]:
        torch.set_num_threads(threads[0])
    from render3d.zoo.base import registry

    models = (args.models or ",".join(registry())).split(",")
    print(header(matmul=False) + "\n", flush=True)
    for data_name in args.data.split(","):
        print(bench_data(data_name, models, args.budget, Path(args.out), Path(args.report), args.n_eval, args.n, args.reuse), flush=True)
        if data_name == "fashion-mnist":
            print(REFERENCES + "\n", flush=True)


# ----------------------------------------------------------------------------- --mode speed


def measure(models: list[str], threads: int, options: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """One row per model: FLOPs per step and step times, using only the zoo API every version has."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from render3d.zoo.base import ImageSpec, registry

    def timed(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    torch.set_num_threads(threads)
    rows = []
    for name in models:
        cls = registry()[name]
        labeled = name in ("gan", "diffusion")
        spec = ImageSpec(1, 28, 10 if labeled else 0)
        fields = set(cls.config_type.__dataclass_fields__)
        if not set(options) <= fields:
            rows.append({"model": name, "threads": threads, **options, "error": "option not supported"})
            continue
        torch.manual_seed(0)
        model = cls(cls.config_type(**options), spec)
        x = torch.rand(64, 1, 28, 28)
        y = torch.randint(0, 10, (64,)) if labeled else None
        model.fit(x, y)
        with FlopCounterMode(display=False) as counter:
            model.fit(x, y)
        gflop = counter.get_total_flops() / 1e9
        model.fit(x, y)
        peak = matmul_gflops()
        wall, cpu = [], []
        for _ in range(steps):
            c0 = time.process_time()
            wall.append(timed(lambda: model.fit(x, y)))
            cpu.append(time.process_time() - c0)
        best = min(wall)
        rows.append({"model": name, "threads": threads, **options, "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                     "step_gflop": gflop, "best_ms": 1000 * best, "median_ms": 1000 * statistics.median(wall),
                     "cpu_ms": 1000 * statistics.median(cpu), "steps_per_s": 1 / best, "gflops": gflop / best,
                     "matmul_gflops": peak})
    return rows


SPEED_COLUMNS = ["code", "model", "threads", "bf16", "params", "GFLOP/step", "best ms", "median ms", "CPU ms", "steps/s", "GFLOP/s",
                 "matmul GFLOP/s"]


def format_rows(rows: list[dict[str, Any]], label: str) -> str:
    """Markdown table lines (no header) for ``measure``'s rows."""
    return "\n".join(
        f"| {label} | {r['model']} | {r['threads']} | {r.get('bf16', 'no')} | {r['params']:,} | {r['step_gflop']:.2f} | "
        f"{r['best_ms']:.0f} | {r['median_ms']:.0f} | {r['cpu_ms']:.0f} | {r['steps_per_s']:.2f} | {r['gflops']:.1f} | "
        f"{r['matmul_gflops']:.0f} |" for r in rows if "error" not in r)


def run_worker(tree: Optional[Path], models: list[str], threads: int, options: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """``measure`` in a subprocess importing render3d from ``tree`` (an older checkout; None: this one)."""
    code = python_code_in(tree, f"import json\nfrom bench_zoo import measure\nprint(json.dumps(measure({models!r}, {threads}, {options!r}, {steps})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_mode(args: argparse.Namespace) -> None:
    models = (args.models or SPEED_MODELS).split(",")
    threads = [int(t) for t in (args.threads or "1,2").split(",")]
    print(f"{header(matmul=False)}\n\n2048x2048 float32 matmul at the start: {matmul_gflops():.0f} GFLOP/s\n\n{table_header(SPEED_COLUMNS)}", flush=True)
    with baseline_checkout(args.baseline_tree) as tree:
        if tree is not None:  # the older checkout first
            for t in threads:
                print(format_rows(run_worker(tree, models, t, {}, args.steps), baseline_label(args.baseline_tree)), flush=True)
    for t in threads:
        for bf16 in (False, True):
            print(format_rows(run_worker(None, models, t, {"bf16": bf16}, args.steps), "this checkout"), flush=True)
    print(f"\n2048x2048 float32 matmul at the end: {matmul_gflops():.0f} GFLOP/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("compare", "speed"), default="compare", help="what to measure (default: compare)")
    parser.add_argument("--models", default=None, help="comma-separated models (default: all)")
    parser.add_argument("--threads", default=None, help="torch threads; compare: one count (default: torch's, one per core); "
                        "speed: comma-separated counts, a row each (default: 1,2)")
    parser.add_argument("--budget", type=float, default=300.0, help="compare: training seconds per model (default: 300)")
    parser.add_argument("--data", default="fashion-mnist,faces", help="compare: comma-separated data sets (default: fashion-mnist,faces)")
    parser.add_argument("--out", default="runs/bench-zoo", help="compare: folder for the runs (default: runs/bench-zoo)")
    parser.add_argument("--report", default="bench/results/zoo", help="compare: folder for the reports (default: bench/results/zoo)")
    parser.add_argument("-n", type=int, default=0, help="compare: samples per model for the metrics (default: 2000 for "
                        "fashion-mnist, 500 for faces; fewer makes Fréchet distances biased upwards)")
    parser.add_argument("--n-eval", type=int, default=500, help="compare: held-out images for bits/dim and reconstructions")
    parser.add_argument("--reuse", action="store_true", help="compare: keep finished runs in --out trained with today's default "
                        "options and the same budget (each row still shows its own steps/s and matmul GFLOP/s)")
    parser.add_argument("--steps", type=int, default=6, help="speed: timed steps per row (default: 6)")
    parser.add_argument("--baseline-tree", default=None, metavar="DIR|REV",
                        help="speed: also measure this older checkout, a folder or a git revision (its default options, float32)")
    args = parser.parse_args()
    {"compare": compare_mode, "speed": speed_mode}[args.mode](args)


if __name__ == "__main__":
    main()
