"""Training speed: the default job end to end, splat throughput at a fixed Gaussian count, and CPU thread teams.

    python bench/bench_train.py --mode job [--steps 1200] [--backend auto] [--rounds 1] [--warmup 20]
        [--variant NAME=VAR=VALUE,VAR=VALUE ...] [--baseline-tree DIR|REV] [--allocator]
    python bench/bench_train.py --mode speed [--backend auto] [--resolution 800 ...] [--gaussians 100000 300000] [--steps 200]
        [--warmup 20] [--plot PNG]
    python bench/bench_train.py --mode threads [--method splat] [--steps 30] [--warmup 10] [--rounds 2]

``--mode job`` (the default): ``render3d train`` on the bundled scene, in a subprocess per
variant, timed end to end: wall time, training time, test PSNR / SSIM, the Gaussian count,
and the process's minor page faults, user and system CPU seconds and peak memory. Variants
run in turn, ``--rounds`` times, interleaved, so machine load hits them alike (rows:
medians). Each variant first runs ``--warmup`` (20) steps untimed (``--warmup 0``: none):
that generates the scene and lets numba compile kernels whose source changed (cached after,
as for a user's second run), so the rows time training, not a one-off compilation.
``--steps`` overrides the command's default step count.

- ``--variant NAME=ENV``: the command with extra environment variables (``NAME=`` alone: as is).
- ``--baseline-tree DIR|REV``: also an older checkout, a folder or a git revision (see
  ``bench/common.py``), run with ``PYTHONPATH`` pointing at it: the ``before`` row.
- ``--allocator``: the glibc malloc tuning of ``render3d/runtime.py`` on and off (the
  OpenMP wait policy passive in both).

Targets on a 2-core CPU: under 180 s wall, at least 28 dB.

``--mode speed``: the splat trainer's steps/s at a fixed Gaussian count. Renders a few views
of the default scene at ``--resolution``, starts from that many random Gaussians with
densification switched off (so the count stays fixed), and times ``--steps`` steps after
``--warmup`` untimed ones, for each of ``--gaussians`` at each ``--resolution``. With several
sizes and counts it fits the cost curve ``ms per step = a + b * megapixels + c * (100k Gaussians)
+ d * megapixels * (100k Gaussians)`` by least squares, prints it, and with ``--plot`` draws
ms per step against megapixels, one line per count, with the fit (a user predicts a run's length
from it: steps times the ms per step of their image size and Gaussian count).

``--mode threads``: the thread teams on the CPU, training steps/s under each OpenMP wait
policy and thread split. PyTorch (its own libgomp) and numba's ``omp`` threading layer (the
system libgomp) each keep a thread team. Each configuration trains the default scene
(``--method``) in a fresh process (``--warmup`` steps, then ``--steps`` timed ones; glibc
malloc tuned alike in all), rounds interleaved; cells are medians over the rounds. CPU ms
counts every thread of the process: what a spinning team burns shows up there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import baseline_checkout, baseline_label, header, interleaved, medians, table_header, table_row  # noqa: E402

# defaults of the options whose meaning each mode shares but whose value it does not
DEFAULTS = {"job": {"warmup": 20, "rounds": 1}, "speed": {"steps": 200, "warmup": 20}, "threads": {"steps": 30, "warmup": 10, "rounds": 2}}


def time_steps(trainer: Any, warmup: int, steps: int) -> dict[str, float]:
    """Steps/s over ``steps`` training steps after ``warmup`` untimed ones, and the process's CPU ms per step."""
    import torch

    for _ in range(warmup):
        trainer.step_once()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        trainer.step_once()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"steps_per_s": steps / wall, "cpu_ms": 1000 * cpu / steps}


# ----------------------------------------------------------------------------- --mode job


def run_job(env: dict[str, str], steps: int | None, backend: str) -> dict[str, Any]:
    """One ``render3d train`` in a fresh process; its metrics and resource usage."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "render3d", "train", "--out", f"{tmp}/run", "--backend", backend, "--no-progress"]
        if steps:
            cmd += ["--steps", str(steps)]
        start = time.perf_counter()
        # cwd: the temporary folder, so that ``-m`` does not put this checkout ahead of PYTHONPATH (--baseline-tree)
        process = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, cwd=tmp)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"render3d train failed with {env}")
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {"wall": wall, "train": m["train_seconds"], "psnr": m["psnr"], "ssim": m["ssim"], "gaussians": m["gaussians"],
            "steps": m["steps"], "minflt": usage.ru_minflt, "user": usage.ru_utime, "sys": usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "backend": m["backend"]}


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def job_mode(args: argparse.Namespace) -> None:
    variants = [parse_variant(v) for v in args.variant]
    if args.allocator:
        variants += [("malloc tuned (default)", {"OMP_WAIT_POLICY": "PASSIVE"}),
                     ("glibc malloc defaults", {"RENDER3D_PROCESS_SETUP": "0", "OMP_WAIT_POLICY": "PASSIVE"})]
    variants = variants or [("render3d train", {})]
    with baseline_checkout(args.baseline_tree) as tree:
        if tree:
            variants.insert(0, (f"before ({baseline_label(args.baseline_tree)})", {"PYTHONPATH": str(tree)}))
        if args.warmup:  # untimed: compiles (and caches) kernels whose source changed, and makes the scene
            for _, env in variants:
                run_job(env, args.warmup, args.backend)
        results = interleaved({name: (lambda env=env: run_job(env, args.steps, args.backend)) for name, env in variants}, args.rounds)
    print(header(f"{args.rounds} round(s), medians; load average at the end {os.getloadavg()}") + "\n")
    print(table_header(["variant", "backend", "steps", "wall s", "train s", "PSNR", "SSIM", "Gaussians", "minor faults", "user s", "sys s",
                        "peak MB"]))
    for name, rows in results.items():
        med = medians(rows)
        print(table_row([name, med["backend"], f"{med['steps']:.0f}", f"{med['wall']:.1f}", f"{med['train']:.1f}", f"{med['psnr']:.2f}",
                         f"{med['ssim']:.3f}", f"{med['gaussians']:.0f}", f"{med['minflt'] / 1e6:.2f}M", f"{med['user']:.1f}",
                         f"{med['sys']:.2f}", f"{med['rss_mb']:.0f}"]))


# ----------------------------------------------------------------------------- --mode speed


def speed_mode(args: argparse.Namespace) -> None:
    import torch

    from render3d.datasets import load_scene
    from render3d.datasets.synthetic import generate_scene
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    rows = []
    for resolution in args.resolution:
        with tempfile.TemporaryDirectory() as tmp:
            scene = load_scene(generate_scene(f"{tmp}/scene", resolution=resolution, n_train=8, n_val=1, n_test=1))
        for n in args.gaussians:
            config = TrainConfig(steps=args.steps + args.warmup, backend=args.backend,
                                 out=f"{tempfile.gettempdir()}/bench-train-speed", save_every=0, progress=False)
            # refine_start beyond the run: no densification, the count stays at n
            splat = SplatConfig(init_points=n, init_scale=0.5, refine_start=10**9, refine_stop=10**9)
            trainer = Trainer(config, splat, scene=scene)
            rows.append((trainer.backend, n, resolution, time_steps(trainer, args.warmup, args.steps)))
            print(rows[-1], flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(header(f"device: {device}; {args.steps} timed steps after {args.warmup}, densification off") + "\n")
    print(table_header(["backend", "gaussians", "size", "steps/s", "ms per step", "CPU ms per step"]))
    for backend, n, resolution, timing in rows:
        print(table_row([backend, n, f"{resolution}x{resolution}", f"{timing['steps_per_s']:.1f}",
                         f"{1000 / timing['steps_per_s']:.0f}", f"{timing['cpu_ms']:.0f}"]))
    if len(args.resolution) > 1 and len(args.gaussians) > 1:
        cost_curve([(resolution ** 2 / 1e6, n / 1e5, 1000 / timing["steps_per_s"]) for _, n, resolution, timing in rows],
                   args.plot)


def cost_curve(points: list[tuple[float, float, float]], plot: str | None) -> None:
    """Fit ``ms = a + b P + c G + d P G`` (P megapixels, G hundred thousand Gaussians) to ``points``, print it, and
    with ``plot`` draw the measurements and the fit."""
    import numpy as np

    from render3d.video.plot import Series, line_plot

    data = np.array(points)
    design = np.stack([np.ones(len(data)), data[:, 0], data[:, 1], data[:, 0] * data[:, 1]], axis=1)
    (a, b, c, d), *_ = np.linalg.lstsq(design, data[:, 2], rcond=None)
    worst = np.max(np.abs(design @ np.array([a, b, c, d]) / data[:, 2] - 1))
    print(f"\ncost curve: ms per step = {a:.0f} + {b:.0f} * megapixels + {c:.0f} * (100k Gaussians) + {d:.0f} * megapixels "
          f"* (100k Gaussians); largest misfit {100 * worst:.0f}%")
    if plot:
        series = []
        for g in sorted(set(data[:, 1])):
            measured = data[data[:, 1] == g]
            order = np.argsort(measured[:, 0])
            label = f"{g * 100:g}k Gaussians"
            series.append(Series(measured[order, 0].tolist(), measured[order, 2].tolist(), label, points=True))
            xs = np.linspace(measured[:, 0].min(), measured[:, 0].max(), 20)
            series.append(Series(xs.tolist(), (a + b * xs + c * g + d * xs * g).tolist(), f"fit, {label}", dashed=True, markers=False))
        line_plot(series, Path(plot), "splat training step on the CPU", "image megapixels", "ms per step")
        print(f"plot: {plot}")


# ----------------------------------------------------------------------------- --mode threads

# (label, environment, torch threads, numba threads); cores = os.cpu_count()
CORES = os.cpu_count() or 1
CONFIGS = [
    ("libgomp default (spins), torch N + numba N", {}, CORES, CORES),
    ("libgomp default (spins), torch 1 + numba N", {}, 1, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch N + numba N", {"OMP_WAIT_POLICY": "PASSIVE"}, CORES, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch 1 + numba N", {"OMP_WAIT_POLICY": "PASSIVE"}, 1, CORES),
    ("OMP_WAIT_POLICY=PASSIVE, torch 1 + numba 1", {"OMP_WAIT_POLICY": "PASSIVE"}, 1, 1),
    ("GOMP_SPINCOUNT=10000, torch N + numba N", {"GOMP_SPINCOUNT": "10000"}, CORES, CORES),
    ("PASSIVE + numba workqueue layer, N + N", {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER": "workqueue"}, CORES, CORES),
]
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")


def threads_worker(method: str, warmup: int, steps: int, torch_threads: int, numba_threads: int) -> None:
    """Train ``warmup + steps`` steps here and print one JSON line of timings."""
    from render3d.runtime import tune_malloc

    tune_malloc()  # before torch loads
    import numba
    import torch

    from render3d.methods import get_method
    from render3d.train import TrainConfig, Trainer

    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)
    config = TrainConfig(method=method, steps=3000, backend="torch", out=tempfile.mkdtemp(), save_every=0, progress=False)
    trainer = Trainer(config, get_method(method).config_type())
    print(json.dumps({**time_steps(trainer, warmup, steps), "layer": numba.threading_layer()}))


def run_threads_config(env: dict[str, str], args: argparse.Namespace, torch_threads: int, numba_threads: int) -> dict:
    """One fresh process with ``env`` on top of a clean OpenMP environment."""
    base = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    cmd = [sys.executable, __file__, "--mode", "threads", "--worker", "--method", args.method, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--torch-threads", str(torch_threads), "--numba-threads", str(numba_threads)]
    out = subprocess.run(cmd, env={**base, **env}, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def threads_mode(args: argparse.Namespace) -> None:
    if args.worker:
        threads_worker(args.method, args.warmup, args.steps, args.torch_threads, args.numba_threads)
        return
    runs = {label: (lambda env=env, tt=tt, nt=nt: run_threads_config(env, args, tt, nt)) for label, env, tt, nt in CONFIGS}
    results = interleaved(runs, args.rounds)
    base = medians(results[CONFIGS[0][0]])["steps_per_s"]
    print(header(f"{args.method} training on the default scene, N = {CORES} cores, {args.steps} steps after {args.warmup}, "
                 f"median of {args.rounds} interleaved rounds; load average at the end {os.getloadavg()}") + "\n")
    print(table_header(["configuration", "steps/s", "vs first row", "CPU ms per step", "numba layer"]))
    for label, rows in results.items():
        med = medians(rows)
        print(table_row([label, f"{med['steps_per_s']:.2f}", f"{med['steps_per_s'] / base:.2f}x", f"{med['cpu_ms']:.0f}", med["layer"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=tuple(DEFAULTS), default="job", help="what to measure (default: job)")
    parser.add_argument("--steps", type=int, default=None, help="job: the run's step count (default: the command's); "
                        "speed: timed steps per count (200); threads: timed steps (30)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (job: a separate run per variant, 20; "
                        "speed: 20; threads: 10)")
    parser.add_argument("--rounds", type=int, default=None, help="job, threads: interleaved rounds, rows are medians (1, 2)")
    parser.add_argument("--backend", default="auto", help="job, speed: auto, cuda or torch")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=VAR=VALUE,...", help="job: a row with these environment variables")
    parser.add_argument("--baseline-tree", default=None, metavar="DIR|REV", help="job: an older checkout (folder or git revision) as the 'before' row")
    parser.add_argument("--allocator", action="store_true", help="job: compare glibc malloc tuned and untuned")
    parser.add_argument("--resolution", type=int, nargs="+", default=[800], help="speed: image sizes of the rendered views")
    parser.add_argument("--plot", default=None, metavar="PNG", help="speed: draw the cost curve here (several sizes and counts)")
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 300_000], help="speed: Gaussian counts to time")
    parser.add_argument("--method", default="splat", help="threads: splat or nerf")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-threads", type=int, default=CORES, help=argparse.SUPPRESS)
    parser.add_argument("--numba-threads", type=int, default=CORES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in DEFAULTS[args.mode].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    {"job": job_mode, "speed": speed_mode, "threads": threads_mode}[args.mode](args)


if __name__ == "__main__":
    main()
