"""The ``render3d`` command: train, eval, info and data generation.

Every user error ends in one line on stderr and exit status 2; Ctrl-C during training
saves a checkpoint and says how to resume (exit status 130).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from render3d.config_cli import add_config_args, config_from_args, explicit_options
from render3d.errors import Render3DError
from render3d.methods import METHODS


def _one_line_warnings() -> None:
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"  # type: ignore[assignment]


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    shown = {k: v for k, v in metrics.items() if k not in ("per_view", "lpips_note")}
    print(json.dumps(shown, indent=2))
    if metrics.get("lpips") is None and metrics.get("lpips_note"):
        print(f"LPIPS unavailable: {metrics['lpips_note']}")
    print(f"run folder: {run_dir}")


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.train import TrainConfig, Trainer

    if args.resume:
        typed = explicit_options(list(argv)) & {"steps", "eval_every", "save_every", "progress", "backend"}
        trainer = Trainer.from_checkpoint(args.resume, **{k: getattr(args, k) for k in typed})
        print(f"resuming {trainer.checkpoint_path()} at step {trainer.step} of {trainer.config.steps}")
    else:
        config = config_from_args(args, TrainConfig)
        method_config = config_from_args(args, METHODS[config.method].config_type(), prefix=f"{config.method}.") if config.method in METHODS else None
        trainer = Trainer(config, method_config)
    print(f"training {trainer.config.method} on {trainer.scene.root} with the {trainer.backend} backend -> {trainer.run_dir}")
    if args.viewer:  # the live web viewer (render3d.viewer) watches and controls this trainer
        from render3d.viewer.cli import attach_training_viewer

        viewer = attach_training_viewer(trainer, args.host, args.port)
    try:
        metrics = trainer.run()
    except KeyboardInterrupt:
        print(
            f"\ninterrupted at step {trainer.step}; checkpoint saved to {trainer.checkpoint_path()}\n"
            f"continue with: render3d train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return 130
    _print_metrics(metrics, trainer.run_dir)
    if args.viewer:  # keep showing the trained scene
        print(f"training done; the viewer stays at {viewer.url} until Ctrl-C")
        viewer.wait()
    return 0


def cmd_eval(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.backend import device_for, resolve_backend
    from render3d.evaluate import evaluate_split
    from render3d.methods import model_from_checkpoint
    from render3d.train import TrainConfig, find_checkpoint, load_checkpoint, load_data, write_json

    file = find_checkpoint(args.run)
    ckpt = load_checkpoint(file)
    config = TrainConfig(**ckpt["config"])
    scene = load_data(config)
    split = scene.split(args.split)
    if len(split) == 0:
        raise Render3DError(f"the {args.split} split of {scene.root} is empty: choose another with --split")
    backend = resolve_backend(args.backend)
    model = model_from_checkpoint(ckpt, backend, device_for(backend))
    run_dir = file.parent
    error_dir = run_dir / "renders" / f"{args.split}_errors" if args.error_maps else None
    result = evaluate_split(model, split, run_dir / "renders" / args.split, error_dir)
    metrics = {"method": ckpt["method"], "step": ckpt["step"], "split": args.split, "backend": backend, **result}
    write_json(metrics, run_dir / f"eval_{args.split}.json")
    _print_metrics(metrics, run_dir)
    return 0


def cmd_info(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.datasets import load_scene

    scene = load_scene(args.data, downscale=args.downscale, format=args.format)
    print(scene.summary())
    return 0


def cmd_data_synth(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.datasets.synthetic import generate_scene

    out = generate_scene(args.out, resolution=args.resolution, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed)
    print(f"wrote the default scene ({args.n_train}/{args.n_val}/{args.n_test} views at {args.resolution}px) to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from render3d.train import TrainConfig

    parser = argparse.ArgumentParser(prog="render3d", description="3D neural rendering: train, evaluate and inspect scenes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a scene (default: Gaussian Splatting on the bundled scene)",
                           description="Train a method on a dataset folder; writes checkpoint, metrics.json, test renders and config.json to the run folder.")
    train.add_argument("data", nargs="?", default=None, help="dataset folder; the bundled default scene when omitted")
    add_config_args(train, TrainConfig, skip=("data",), title="training")
    for name, entry in METHODS.items():
        add_config_args(train, entry.config_type(), prefix=f"{name}.", title=f"{name}: {entry.description}")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained run on a split", description="Render a split of the run's dataset, report PSNR/SSIM (LPIPS when its weights are on disk) and write renders.")
    ev.add_argument("run", help="run folder or checkpoint file")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"), help="which split to evaluate (default: test)")
    ev.add_argument("--backend", default="auto", help="auto, cuda or torch (default: auto)")
    ev.add_argument("--error-maps", action="store_true", help="also write per-view |render - ground truth| heat maps to renders/<split>_errors/")
    ev.set_defaults(func=cmd_eval)

    info = sub.add_parser("info", help="print a summary of a dataset folder", description="Detect a dataset's format and print its images, cameras and bounds.")
    info.add_argument("data", help="dataset folder")
    info.add_argument("--downscale", type=int, default=1, help="image downscale factor (default: 1)")
    info.add_argument("--format", default=None, help="force a format instead of detecting it")
    info.set_defaults(func=cmd_info)

    data = sub.add_parser("data", help="generate datasets", description="Generate datasets.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="KIND")
    synth = data_sub.add_parser("synth", help="write the procedural default scene (Blender layout)", description="Render the procedural default scene with depth and masks into OUT (Blender / NeRF-synthetic layout).")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--resolution", type=int, default=128, help="image width and height (default: 128)")
    synth.add_argument("--n-train", type=int, default=100, help="training views (default: 100)")
    synth.add_argument("--n-val", type=int, default=10, help="validation views (default: 10)")
    synth.add_argument("--n-test", type=int, default=20, help="test views (default: 20)")
    synth.add_argument("--seed", type=int, default=0, help="camera placement seed (default: 0)")
    synth.set_defaults(func=cmd_data_synth)
    from render3d.viewer.cli import add_view_parser
    add_view_parser(sub)

    from render3d.export.cli import add_export_parser, add_render_parser
    add_render_parser(sub)
    add_export_parser(sub)
    __import__("render3d.zoo.cli", fromlist=["add_zoo_parser"]).add_zoo_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``render3d`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, argv)
    except Render3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
