"""``render3d prior fit`` and ``render3d prior bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from render3d.errors import Render3DError


def _views(text: str) -> list[int]:
    try:
        views = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise Render3DError(f"--views {text!r} must be comma-separated whole numbers, e.g. 3,6,12") from None
    if not views or min(views) < 1:
        raise Render3DError(f"--views {text!r} must list view counts of at least 1")
    return views


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"downscale": args.downscale, "test_every": args.test_every, "data_format": args.data_format}
    return {k: v for k, v in options.items() if v is not None}


def cmd_prior_fit(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.priors.fit import fit_prior, resume_prior
    from render3d.training import TrainingInterrupted

    try:
        if args.resume:
            result = resume_prior(Path(args.resume), budget=args.budget, progress=not args.no_progress)
            out = Path(args.resume)
        else:
            if not args.out:
                raise Render3DError("pass --out PRIOR_RUN (the prior's run folder)")
            views = _views(args.views)[0] if args.views else 0
            out = Path(args.out)
            result = fit_prior(args.data, views, out, _train_options(args), size=args.size, per_view=args.per_view,
                               include_default_scene=args.include_default_scene, budget=args.budget, steps=args.steps,
                               seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        print(f"\nstopped by {stop.signal_name}; continue with: render3d prior fit --resume {stop.checkpoint.parent}", file=sys.stderr)
        return stop.exit_code
    print(f"prior: {result['steps']} steps in {result['train_seconds']} s -> {out} (sources in {out / 'prior.json'})")
    return 0


def cmd_prior_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.priors.bench import run_bench

    train = {"method": args.method, "steps": args.steps, "max_seconds": args.budget, "backend": args.backend, **_train_options(args)}
    if args.prior_weight is not None:
        train["prior_weight"] = args.prior_weight
    train["prior_mode"] = args.prior_mode
    prior = {"size": args.size, "per_view": args.per_view, "include_default_scene": args.include_default_scene, "budget": args.prior_budget}
    out = Path(args.out)
    rows = run_bench(args.data, _views(args.views), args.seeds, out, {"train": train}, prior, use_prior=not args.no_prior,
                     log=lambda line: print(line, flush=True))
    print((out / "report.md").read_text())
    print(f"renders: {out / 'renders'}")
    return 0 if rows else 2


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None, help="dataset folder; the bundled default scene when omitted")
    p.add_argument("--downscale", type=int, default=None, help="image downscale factor (as render3d train)")
    p.add_argument("--test-every", type=int, default=None, help="hold out every N-th image (formats without splits)")
    p.add_argument("--data-format", default=None, help="force a dataset format")
    p.add_argument("--size", type=int, default=32, help="the prior's patch size in pixels (multiple of 4; default: 32)")
    p.add_argument("--per-view", type=int, default=200, help="random patches per training view (default: 200)")
    p.add_argument("--include-default-scene", action="store_true", help="also learn from patches of the bundled default scene")


def add_prior_parser(sub: Any) -> None:
    """Add ``render3d prior {fit,bench}``."""
    from render3d.train import PRIOR_TERMS  # already loaded by the train parser

    prior = sub.add_parser("prior", help="diffusion priors for sparse-view 3D: fit one, benchmark regularisers and priors",
                           description="Fit a zoo diffusion model on what a sparse-view run may see, and compare sparse-view training "
                                       "with no regulariser, non-learned regularisers and the diffusion prior.")
    actions = prior.add_subparsers(dest="prior_command", required=True, metavar="ACTION")

    fit = actions.add_parser("fit", help="train a prior on random patches of the K training views",
                             description="Train a zoo diffusion model on random patches of the --views K training views (the views "
                                         "`render3d train --views K` picks), never on held-out views; prior.json records the files used.")
    _data_options(fit)
    fit.add_argument("--views", default=None, help="train views K (as render3d train --views; default: all)")
    fit.add_argument("--out", default=None, help="the prior's run folder")
    fit.add_argument("--budget", type=float, default=300.0, help="training seconds (default: 300)")
    fit.add_argument("--steps", type=int, default=100_000, help="most training steps (default: 100000)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.add_argument("--resume", default=None, help="continue an interrupted prior run")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.add_argument("--overwrite", action="store_true", help="replace a prior already in --out")
    fit.set_defaults(func=cmd_prior_fit)

    bench = actions.add_parser("bench", help="compare regularisers and the prior at several view counts",
                               description="Train from K views with no regulariser, each non-learned regulariser, (splats) starting "
                                           "points from the training views (--points views) and random backgrounds, everything together, "
                                           "the diffusion prior, and the best non-learned configuration (chosen on validation views; 'all' "
                                           "where the data has none of its own) plus the prior; print test PSNR / SSIM over seeds and "
                                           "write side-by-side renders.")
    _data_options(bench)
    bench.add_argument("--views", default="3,6,12", help="view counts (default: 3,6,12)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default: 3)")
    bench.add_argument("--method", default="splat", help="splat, nerf or vanilla-nerf (default: splat)")
    bench.add_argument("--steps", type=int, default=1200, help="steps per run (default: 1200)")
    bench.add_argument("--budget", type=float, default=0.0, help="seconds per run (0: steps only)")
    bench.add_argument("--prior-budget", type=float, default=300.0, help="seconds to fit each view count's prior (default: 300)")
    bench.add_argument("--prior-mode", default="sds", choices=list(PRIOR_TERMS), help="how the prior acts (as render3d train --prior-mode)")
    bench.add_argument("--prior-weight", type=float, default=None, help="weight of the diffusion prior (default: the mode's own)")
    bench.add_argument("--no-prior", action="store_true", help="only the non-learned configurations")
    bench.add_argument("--backend", default="auto", help="auto, cuda or torch")
    bench.add_argument("--out", default="prior-bench", help="report folder (default: prior-bench)")
    bench.set_defaults(func=cmd_prior_bench)
