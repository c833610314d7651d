"""A small scaling study of the world model: held-out loss against parameter count at a fixed token budget.

    python bench/bench_video_scaling.py --clips runs/clips-default --tokenizer runs/bench-video/tok-discrete \
        --tokens 500000 --out runs/bench-video-scaling

Each size is trained on the same number of target tokens (steps = tokens / (batch x target tokens
per clip)) with the same data, seed and learning-rate schedule (warm-up, then a cosine decay to a tenth over
its steps, as in Hoffmann et al. 2022), and its held-out next-frame loss
(nats per token, clean context) is measured. A power law ``L(N) = a * N^-alpha + c`` (Kaplan et al.
2020; the irreducible term ``c`` as in Hoffmann et al. 2022) is fitted to loss against non-embedding
parameters with scipy, printed, and plotted to ``OUT/scaling.png``. With 3-4 points the fit says
little beyond the trend: read the exponent as a rough indication, not a law.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import describe

from render3d.files import write_json
from render3d.video.clips import load_clips
from render3d.video.plot import Series, line_plot
from render3d.video.tokenizer import latent_frames, load_tokenizer
from render3d.video.train import VideoTrainConfig, WorldModelTrainer
from render3d.video.world_model import TokenGrid, WorldModel, WorldModelConfig

SIZES = [(32, 2, 2), (64, 2, 4), (96, 3, 4), (128, 4, 4)]  # (dim, layers, heads); key/value heads: heads / 2


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters of the transformer blocks (what scaling laws count)."""
    return sum(p.numel() for p in model.blocks.parameters())  # type: ignore[attr-defined]


def fit_power_law(n: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Least-squares ``L = a N^-alpha + c`` (c >= 0), started from a straight-line fit in log-log space."""
    from scipy.optimize import curve_fit

    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    f = lambda x, a, alpha, c: a * np.power(x, -alpha) + c  # noqa: E731
    try:
        (a, alpha, c), _ = curve_fit(f, n, loss, p0=(math.exp(intercept), -slope, 0.0),
                                     bounds=([0, 0, 0], [np.inf, 5, float(loss.min())]), maxfev=20000)
    except RuntimeError:  # no convergence: report the pure power law
        a, alpha, c = math.exp(intercept), -slope, 0.0
    return {"a": float(a), "alpha": float(alpha), "c": float(c)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", default="runs/clips-default")
    parser.add_argument("--tokenizer", default="runs/bench-video/tok-discrete", help="a discrete tokenizer run")
    parser.add_argument("--tokens", type=int, default=500_000, help="target tokens each size is trained on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="runs/bench-video-scaling")
    args = parser.parse_args()
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    machine = describe()
    print(f"machine: {machine}", flush=True)
    clips = load_clips(args.clips)
    width, height = clips.size
    grid = TokenGrid(tuple(load_tokenizer(args.tokenizer).fsq.levels), latent_frames(clips.frames), height // 8, width // 8)
    steps = max(1, args.tokens // (args.batch * (grid.frames - 1) * grid.per_frame))  # target tokens per step
    rows: list[dict[str, Any]] = []
    for dim, layers, heads in SIZES:
        run = out / f"d{dim}-l{layers}"
        config = WorldModelConfig(dim=dim, layers=layers, heads=heads, kv_heads=max(1, heads // 2), final_lr=0.1)
        done = run / "metrics.json"
        if not done.is_file():
            train = VideoTrainConfig(steps=steps, batch_size=args.batch, out=str(run), save_every=0, progress=False)
            WorldModelTrainer(clips, train, config, args.tokenizer).run()
        metrics = json.loads(done.read_text())
        n = non_embedding_parameters(WorldModel(config, grid))
        rows.append({"dim": dim, "layers": layers, "heads": heads, "non_embedding_parameters": n,
                     "parameters": metrics["parameters"], "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
                     "held_out_loss": metrics["held_out_loss"]})
        print(f"dim {dim} layers {layers}: {n:,} non-embedding parameters, {metrics['steps']} steps in "
              f"{metrics['train_seconds']:.0f} s, held-out loss {metrics['held_out_loss']:.4f} nats/token", flush=True)
    ns = np.array([r["non_embedding_parameters"] for r in rows], float)
    losses = np.array([r["held_out_loss"] for r in rows], float)
    fit = fit_power_law(ns, losses)
    xs = np.geomspace(ns.min() * 0.8, ns.max() * 1.25, 50)
    curve = fit["a"] * xs ** -fit["alpha"] + fit["c"]
    title = f"world model, {args.tokens:,} target tokens each: L(N) = {fit['a']:.3g} N^-{fit['alpha']:.3f} + {fit['c']:.3f}"
    line_plot([Series(ns.tolist(), losses.tolist(), "held-out loss", points=True), Series(xs.tolist(), curve.tolist(), "fit", markers=False)],
              out / "scaling.png", title, "non-embedding parameters N", "held-out loss (nats/token)", log_x=True)
    print("\n| dim | layers | non-embedding parameters | steps | train s | held-out loss (nats/token) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dim']} | {r['layers']} | {r['non_embedding_parameters']:,} | {r['steps']} | {r['train_seconds']:.0f} | {r['held_out_loss']:.4f} |")
    print(f"\nfit: L(N) = {fit['a']:.4g} * N^-{fit['alpha']:.4f} + {fit['c']:.4f}   plot: {out / 'scaling.png'}")
    print(f"machine after: {describe()}")
    write_json({"machine": machine, "tokens": args.tokens, "rows": rows, "fit": fit}, out / "scaling.json")


if __name__ == "__main__":
    main()
