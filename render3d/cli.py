"""The ``render3d`` command. Its subcommands come from the ``render3d.commands`` entry points
(train, eval, info and data are here; render, export, view and zoo in their packages).

Every user error ends in one line on stderr and exit status 2; Ctrl-C, SIGTERM or SIGHUP
during training save a checkpoint and say how to resume (exit status 130, 143, 129).
"""

from __future__ import annotations

import argparse
import os
import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

from render3d.config_cli import add_config_args, config_from_args, resume_overrides
from render3d.errors import Render3DError


def _one_line_warnings() -> None:
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"  # type: ignore[assignment]


def say(text: str, file: Any = None) -> None:
    """Print on rank 0 only (every rank of a distributed run runs the same command)."""
    from render3d.training import distributed as dist

    if dist.is_main():
        print(text, file=file or sys.stdout, flush=True)


def run_until_stopped(trainer: Any, command: str) -> dict | int:
    """``trainer.run()``'s metrics, or the exit status after a stop signal (with its one-line report)."""
    from render3d.training import EvaluationInterrupted, TrainingInterrupted

    try:
        return trainer.run()
    except EvaluationInterrupted as stop:  # training had finished; its checkpoint is complete
        say(f"\nstopped by {stop.signal_name} during the final evaluation; training finished at step {stop.step} and its "
            f"checkpoint {stop.checkpoint} is complete; the final metrics were not written", file=sys.stderr)
        return stop.exit_code
    except TrainingInterrupted as stop:  # Ctrl-C, SIGTERM or SIGHUP: a checkpoint was written at a step boundary
        say(f"\nstopped by {stop.signal_name} at step {stop.step}; checkpoint saved to {stop.checkpoint}; "
            f"continue with: {command} --resume {trainer.run_dir}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # a second signal: stopped inside a step, without saving
        kept = trainer.checkpoint_path()
        where = f"the last checkpoint {kept} is kept" if kept.is_file() else "no checkpoint was written"
        say(f"\nstopped at once at step {trainer.step}, without saving; {where}", file=sys.stderr)
        return 130


def train_and_report(trainer: Any, command: str) -> int:
    """Train until done or stopped; rank 0 prints the final metrics and the run folder. The exit status."""
    result = run_until_stopped(trainer, command)
    if isinstance(result, int):
        return result
    say(json.dumps(result, indent=2))
    say(f"run folder: {trainer.run_dir}")
    return 0


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    def brief(values: dict) -> dict:
        return {k: brief(v) if isinstance(v, dict) else v for k, v in values.items() if k not in ("per_view", "lpips_note")}

    shown = brief(metrics)
    print(json.dumps(shown, indent=2))
    if metrics.get("lpips") is None and metrics.get("lpips_note"):
        print(f"LPIPS unavailable: {metrics['lpips_note']}")
    print(f"run folder: {run_dir}")


def _loss_options(args: argparse.Namespace, spec: str) -> dict[str, dict[str, Any]]:
    """``--loss.NAME.OPTION`` values of the terms named in ``spec`` (``--loss``, ``--reg``, ``--prior``)."""
    from render3d.losses import parse_loss_spec
    from render3d.registry import LOSS_TERMS

    return {name: asdict(config_from_args(args, LOSS_TERMS.get(name).config_type, prefix=f"loss.{name}."))
            for name, _ in parse_loss_spec(spec)}


def cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.methods import get_method
    from render3d.train import TrainConfig, Trainer, term_spec
    from render3d.training import distributed as dist

    from render3d.training.launch import launch_or_join

    if (code := launch_or_join(args.nproc, argv)) is not None:
        return code
    try:
        if args.resume:
            trainer = Trainer.resume(args.resume, **resume_overrides(TrainConfig, args, argv))
            say(f"resuming {trainer.checkpoint_path()} at step {trainer.step} of {trainer.config.steps}")
        else:
            config = config_from_args(args, TrainConfig)
            config.validate()  # before term_spec reads the options
            method_config = config_from_args(args, get_method(config.method).config_type, prefix=f"{config.method}.")
            trainer = Trainer(config, method_config, loss_options=_loss_options(args, term_spec(config)))
        terms = f" + loss terms {', '.join(t.name for t in trainer.loss_terms)}" if trainer.loss_terms else ""
        ranks = f" on {dist.world_size()} processes" if dist.world_size() > 1 else ""
        say(f"training {trainer.config.method}{terms} on {trainer.scene.root} with the {trainer.backend} backend{ranks} -> {trainer.run_dir}")
        viewer = None
        if args.viewer and dist.is_main():  # the live web viewer (render3d.viewer) watches and controls this trainer
            from render3d.viewer.cli import attach_training_viewer

            viewer = attach_training_viewer(trainer, args.host, args.port)
        metrics = run_until_stopped(trainer, "render3d train")
        if isinstance(metrics, int):
            return metrics
        if dist.is_main():
            _print_metrics(metrics, trainer.run_dir)
        if viewer is not None:  # keep showing the trained scene
            print(f"training done; the viewer stays at {viewer.url} until Ctrl-C")
            viewer.wait()
        return 0
    finally:
        dist.shutdown()


def cmd_eval(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.evaluate import evaluate_split
    from render3d.files import write_json
    from render3d.runs import load_run

    run = load_run(args.run, args.backend, dataset="required")
    split = run.scene.split(args.split)
    if len(split) == 0:
        raise Render3DError(f"the {args.split} split of {run.scene.root} is empty: choose another with --split")
    error_dir = run.run_dir / "renders" / f"{args.split}_errors" if args.error_maps else None
    result = evaluate_split(run.model, split, run.run_dir / "renders" / args.split, error_dir)
    metrics = {"method": run.method, "step": run.step, "split": args.split, "poses": "given", **result}
    if args.refine_test_poses:
        from render3d.evaluate import refine_split_poses

        refined = refine_split_poses(run.model, split, float(run.scene.scene_scale), args.refine_steps)
        fitted = evaluate_split(run.model, refined, run.run_dir / "renders" / f"{args.split}_refined_poses")
        metrics["refined_poses"] = {"steps": args.refine_steps, **fitted}
    if args.appearance_fit == "half":
        from render3d.evaluate import evaluate_appearance_fit

        metrics["appearance_fit"] = evaluate_appearance_fit(run.model, split)
    write_json(metrics, run.run_dir / f"eval_{args.split}.json")
    _print_metrics(metrics, run.run_dir)
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


def add_train_parser(sub: Any) -> None:
    """``render3d train``: options generated from TrainConfig, every method's config and every loss term's."""
    from render3d.registry import LOSS_TERMS, METHODS
    from render3d.train import TrainConfig

    train = sub.add_parser("train", help="train a scene (default: Gaussian Splatting on the bundled scene)",
                           description="Train a method on a dataset folder; writes checkpoint, metrics.json, test renders and config.json "
                                       "to the run folder. Ctrl-C, SIGTERM or SIGHUP save a checkpoint and stop.")
    train.add_argument("data", nargs="?", default=None, help="dataset folder; the bundled default scene when omitted")
    add_config_args(train, TrainConfig, skip=("data",), title="training")
    train.add_argument("--nproc", type=int, default=1, help="train with this many local processes (data parallel, like "
                       "torchrun --nproc-per-node N -m render3d train ...; see docs/distributed.md for several machines)")
    for name, method in METHODS.items():
        add_config_args(train, method.config_type, prefix=f"{name}.", title=f"{name}: {method.description}")
    for name, term in LOSS_TERMS.items():
        add_config_args(train, term.config_type, prefix=f"loss.{name}.", title=f"loss term {name} (--loss {name}): {term.description}")
    train.set_defaults(func=cmd_train)


def add_eval_parser(sub: Any) -> None:
    """``render3d eval``."""
    ev = sub.add_parser("eval", help="evaluate a trained run on a split",
                        description="Render a split of the run's dataset, report PSNR/SSIM (LPIPS when its weights are on disk, "
                                    "depth error when the data has depth) and write renders.")
    ev.add_argument("run", help="run folder or checkpoint file")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"), help="which split to evaluate (default: test)")
    ev.add_argument("--backend", default="auto", help="auto, cuda or torch (default: auto)")
    ev.add_argument(
        "--refine-test-poses",
        action="store_true",
        help="also score each view after fitting its camera pose against the frozen model (for runs trained with "
        "--splat.pose-opt); metrics.json holds both, the fitted scores under refined_poses",
    )
    ev.add_argument("--refine-steps", type=positive_int, default=100, help="optimiser steps per view of --refine-test-poses (default: 100)")
    ev.add_argument("--appearance-fit", choices=("none", "half"), default="none",
                    help="half: also score with NeRF-W's protocol, a per-channel gain fitted on the left half of each view "
                         "and scored on its right half (for captures whose exposure changes); under appearance_fit")
    ev.add_argument("--error-maps", action="store_true", help="also write per-view |render - ground truth| heat maps to renders/<split>_errors/")
    ev.set_defaults(func=cmd_eval)


def add_info_parser(sub: Any) -> None:
    """``render3d info``."""
    info = sub.add_parser("info", help="print a summary of a dataset folder", description="Detect a dataset's format and print its images, cameras and bounds.")
    info.add_argument("data", help="dataset folder")
    info.add_argument("--downscale", type=int, default=1, help="image downscale factor (default: 1)")
    info.add_argument("--format", default=None, help="force a format instead of detecting it")
    info.set_defaults(func=cmd_info)


def add_data_parser(sub: Any) -> None:
    """``render3d data synth`` and ``render3d data process``."""
    data = sub.add_parser(
        "data",
        help="make datasets: process your photos or videos, or write the default scene",
        description="Make datasets: `process` your own photos or videos into a posed scene, or `synth` the default scene.",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="KIND")
    synth = data_sub.add_parser(
        "synth",
        help="write the procedural default scene (Blender layout)",
        description="Render the procedural default scene with depth and masks into OUT (Blender / NeRF-synthetic layout).",
    )
    synth.add_argument("out", help="output folder")
    synth.add_argument("--resolution", type=int, default=128, help="image width and height (default: 128)")
    synth.add_argument("--n-train", type=int, default=100, help="training views (default: 100)")
    synth.add_argument("--n-val", type=int, default=10, help="validation views (default: 10)")
    synth.add_argument("--n-test", type=int, default=20, help="test views (default: 20)")
    synth.add_argument("--seed", type=int, default=0, help="camera placement seed (default: 0)")
    synth.set_defaults(func=cmd_data_synth)
    from render3d.process.cli import add_process_parser

    add_process_parser(data_sub)


# commands that render with the CPU kernels: they compile them ahead (render3d/kernel_warmup.py)
KERNEL_COMMANDS = ("train", "eval", "view", "render", "export")


def start_kernel_warmup() -> None:
    """Compile the CPU kernels in the background while the command loads its data (not where CUDA does the work)."""
    import torch

    from render3d import kernel_warmup

    if not torch.cuda.is_available():
        kernel_warmup.start()


# the order of the built-in commands in --help; plug-in commands follow, by name
COMMAND_ORDER = ("train", "eval", "render", "export", "view", "info", "data", "zoo")


def build_parser() -> argparse.ArgumentParser:
    """The ``render3d`` parser: one subcommand per entry of the ``render3d.commands`` group."""
    from render3d.registry import COMMANDS

    parser = argparse.ArgumentParser(prog="render3d", description="3D neural rendering: train, evaluate, render, export and view scenes.")
    parser.add_argument("--cpu-kernels", choices=("compiled", "torch"), default=None,
                        help="on the CPU, run the splat and NeRF kernels compiled with numba or as plain PyTorch (same results, "
                             "slower); default: compiled, or torch where RENDER3D_CPU_KERNELS=0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = dict(COMMANDS.items())  # a command plug-in that does not load is left out, with a warning
    for name in sorted(commands, key=lambda n: (COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER), n)):
        commands[name](sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``render3d`` console script."""
    from render3d.runtime import configure_process

    configure_process()  # before anything imports torch (see render3d/runtime.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cpu_kernels is not None:
        from render3d.cpu_kernels import ENV_VAR, set_kernel_choice

        set_kernel_choice(args.cpu_kernels)
        os.environ[ENV_VAR] = "0" if args.cpu_kernels == "torch" else "1"  # for worker processes the command starts
    if args.command in KERNEL_COMMANDS:
        start_kernel_warmup()
    try:
        return args.func(args, argv)
    except Render3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
