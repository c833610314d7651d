"""``render3d zoo``: train, sample and compare 2D generative models.

    render3d zoo train MODEL --data DATA [--steps N] [--MODEL.OPTION ...]
    render3d zoo train --resume RUN [--steps N]
    render3d zoo sample RUN -n 64 --out grid.png
    render3d zoo compare RUN... --out report/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from render3d.config_cli import add_config_args, config_from_args, resume_overrides
from render3d.errors import Render3DError


def _sample_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.sampler:
        options["sampler"] = args.sampler
    if args.sample_steps:
        options["steps"] = args.sample_steps
    if args.guidance is not None:
        options["guidance"] = args.guidance
    return options


def cmd_zoo_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.cli import say, train_and_report
    from render3d.training import distributed as dist
    from render3d.zoo.base import get_model_class, registry
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    from render3d.training.launch import launch_or_join

    if (code := launch_or_join(args.nproc, argv)) is not None:
        return code
    try:
        if args.resume:
            trainer = ZooTrainer.resume(args.resume, **resume_overrides(ZooTrainConfig, args, argv))
            say(f"resuming {trainer.checkpoint_path()} at step {trainer.step} of {trainer.config.steps}")
        else:
            if not args.model:
                raise Render3DError(f"name a model to train ({', '.join(registry())}) or pass --resume RUN")
            model_cls = get_model_class(args.model)
            config = config_from_args(args, ZooTrainConfig)
            trainer = ZooTrainer(args.model, config, config_from_args(args, model_cls.config_type, prefix=f"{args.model}."))
        say(f"training {trainer.model.name} ({trainer.model.num_parameters():,} parameters) on {trainer.data.summary()} -> {trainer.run_dir}")
        return train_and_report(trainer, "render3d zoo train")
    finally:
        dist.shutdown()


def cmd_zoo_sample(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import torch

    from render3d.zoo.base import load
    from render3d.zoo.report import save_grid

    if args.n < 1:
        raise Render3DError("-n must be at least 1")
    model = load(args.run)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        images = model.sample(args.n, generator=gen, **_sample_options(args))
    path = save_grid(images, Path(args.out), nrow=args.nrow, scale=args.scale)
    print(f"wrote {args.n} samples of {model.name} to {path}")
    return 0


def cmd_zoo_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.zoo.report import compare, markdown_table

    result = compare(args.runs, args.out, n_samples=args.n, n_eval=args.n_eval, seed=args.seed,
                     sample_options=_sample_options(args), classifier_steps=args.classifier_steps)
    print(markdown_table(result["models"] + result["references"]))
    print(f"report: {args.out}/report.md")
    return 0


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--sampler", choices=("ddim", "ddpm"), default=None, help="diffusion sampler (default: the model's, ddim)")
    parser.add_argument("--sample-steps", type=int, default=None, help="diffusion sampling steps (default: the model's, 50)")
    parser.add_argument("--guidance", type=float, default=None, help="diffusion classifier-free guidance scale (labelled data)")


def add_zoo_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``render3d zoo {train,sample,compare}`` to the main parser's subcommands."""
    from render3d.zoo.base import registry
    from render3d.zoo.train import ZooTrainConfig

    zoo = sub.add_parser("zoo", help="2D generative model zoo: train, sample, compare",
                         description="Train 2D generative models (AE, VAE, VQ-VAE, PixelCNN, GAN, diffusion) and compare them.")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    models = registry()
    train = zoo_sub.add_parser("train", help="train a model", description="Train a zoo model; writes model.pt, config.json and history.json to the "
                                                                          "run folder. Ctrl-C, SIGTERM or SIGHUP save a checkpoint and stop.")
    train.add_argument("model", nargs="?", choices=tuple(models), help="which model: " + "; ".join(f"{n}: {c.description}" for n, c in models.items()))
    train.add_argument("--resume", default=None, help="continue a run folder (with --steps / --budget to extend it)")
    add_config_args(train, ZooTrainConfig, title="training")
    train.add_argument("--nproc", type=int, default=1, help="train with this many local processes (data parallel; or launch with torchrun)")
    for name, cls in models.items():
        add_config_args(train, cls.config_type, prefix=f"{name}.", title=f"{name}: {cls.description}")
    train.set_defaults(func=cmd_zoo_train)

    sample = zoo_sub.add_parser("sample", help="write a grid of samples", description="Draw samples from a trained zoo model into one PNG grid.")
    sample.add_argument("run", help="run folder (or its model.pt)")
    sample.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    sample.add_argument("--out", default="samples.png", help="output PNG (default: samples.png)")
    sample.add_argument("--nrow", type=int, default=8, help="images per row (default: 8)")
    sample.add_argument("--scale", type=int, default=2, help="pixel upscale factor of the grid (default: 2)")
    _add_sampling_options(sample)
    sample.set_defaults(func=cmd_zoo_sample)

    comp = zoo_sub.add_parser(
        "compare",
        help="compare runs in a Markdown report",
        description="Evaluate runs trained on the same data: a table (bits/dim, reconstruction, Fréchet distance, KID, "
        "precision/recall/density/coverage, sizes and times) and sample / reconstruction / interpolation grids.",
    )
    comp.add_argument("runs", nargs="+", help="run folders")
    comp.add_argument("--out", default="zoo-report", help="report folder (default: zoo-report)")
    comp.add_argument("-n", type=int, default=500, help="samples per model for the sample-quality metrics (default: 500)")
    comp.add_argument("--n-eval", type=int, default=500, help="held-out images for bits/dim and reconstructions (default: 500)")
    comp.add_argument("--classifier-steps", type=int, default=1500, help="training steps of the feature classifier when it is not cached yet (default: 1500)")
    _add_sampling_options(comp)
    comp.set_defaults(func=cmd_zoo_compare)
