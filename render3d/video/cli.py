"""``render3d video``: clip datasets, the tokenizer, the world model, generation and evaluation.

    render3d video data SOURCE --clips N --frames T --size 64 --out CLIPS
    render3d video tokenizer train CLIPS [--kind continuous|discrete] [--steps N] [--budget S] [--out RUN]
    render3d video train CLIPS --tokenizer TOK [--steps N] [--budget S] [--out RUN]
        (a discrete TOK: the token transformer; a continuous TOK: the latent diffusion model)
    render3d video generate MODEL --first-frame IMAGE_OR_RUN --path orbit|FILE.json --frames T --out gen.mp4 [--compare]
    render3d video eval MODEL CLIPS [--out DIR]

Training commands take ``--resume RUN`` (with ``--steps`` / ``--budget`` to extend a run);
Ctrl-C, SIGTERM or SIGHUP save a checkpoint and stop (exit status 130, 143, 129).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from render3d.config_cli import add_config_args, config_from_args, resume_overrides
from render3d.errors import Render3DError

DECODE_HELP = ("tokens: the model's own sample (the generated tokens; latent diffusion: its denoised latents); mean: its mean "
               "prediction, blurrier with higher PSNR (each frame's expected FSQ values; latent diffusion: one denoising step "
               "from pure noise) (default: tokens)")


# ----- data ---------------------------------------------------------------------------------------------
def cmd_video_data(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.video.sources import ClipRequest, make_clips

    req = ClipRequest(clips=args.clips, test_clips=args.test_clips, frames=args.frames, size=args.size, seed=args.seed,
                      frame_step=args.frame_step, test_fraction=args.test_fraction, progress=args.progress)
    clips = make_clips(args.source, req)
    clips.save(args.out)
    print(f"wrote {clips.summary()} to {args.out} (preview: {Path(args.out) / 'preview.png'})")
    return 0


# ----- training ---------------------------------------------------------------------------------------
def _run_trainer(trainer: Any, command: str) -> int:
    """Train on this rank (rank 0 prints the outcome); the exit status."""
    from render3d.cli import train_and_report
    from render3d.training import distributed as dist

    try:
        return train_and_report(trainer, command)
    finally:
        dist.shutdown()


def _launched_locally(args: argparse.Namespace, argv: Sequence[str]) -> Optional[int]:
    """With ``--nproc N`` (N > 1): this command as N local ranks (torchrun's agent), and their exit status; else
    None, after joining torchrun's process group where it started this process."""
    from render3d.training.launch import launch_or_join

    return launch_or_join(args.nproc, argv)


def _resume_overrides(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    from render3d.video.train import VideoTrainConfig

    return resume_overrides(VideoTrainConfig, args, list(argv))


def cmd_video_tokenizer_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.cli import say

    if (code := _launched_locally(args, argv)) is not None:
        return code
    from render3d.video.clips import load_clips
    from render3d.video.tokenizer import TokenizerConfig
    from render3d.video.train import TokenizerTrainConfig, TokenizerTrainer, TokenizerTrainOptions

    if args.resume:
        clips = load_clips(args.clips) if args.clips else None
        trainer = TokenizerTrainer.resume(args.resume, clips, **_resume_overrides(args, argv))
        say(f"resuming {trainer.checkpoint_path()} at step {trainer.step} of {trainer.config.steps}")
    else:
        if not args.clips:
            raise Render3DError("pass the clip folder to train on (render3d video data ... --out CLIPS) or --resume RUN")
        trainer = TokenizerTrainer(load_clips(args.clips), config_from_args(args, TokenizerTrainConfig),
                                   config_from_args(args, TokenizerConfig), config_from_args(args, TokenizerTrainOptions))
    m = trainer.model
    say(f"training a {m.config.kind} tokenizer ({m.num_parameters():,} parameters, latent "
        f"{m.latent_channels}x{trainer.window}->{m.latent_shape(trainer.window, *reversed(trainer.clips.size))[1]} frames) "
        f"on {trainer.clips.summary()} -> {trainer.run_dir}")
    return _run_trainer(trainer, "render3d video tokenizer train")


def cmd_video_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.cli import say

    if (code := _launched_locally(args, argv)) is not None:
        return code
    from render3d.video.clips import load_clips
    from render3d.video.train import VideoTrainConfig, WorldModelTrainer
    from render3d.video.world_model import WorldModelConfig

    if args.resume:
        clips = load_clips(args.clips) if args.clips else None
        trainer = WorldModelTrainer.resume(args.resume, clips, **_resume_overrides(args, argv))
        say(f"resuming {trainer.checkpoint_path()} at step {trainer.step} of {trainer.config.steps}")
    else:
        if not args.clips or not args.tokenizer:
            raise Render3DError("pass the clip folder and --tokenizer RUN (a trained tokenizer), or --resume RUN")
        trainer = WorldModelTrainer(load_clips(args.clips), config_from_args(args, VideoTrainConfig),
                                    config_from_args(args, WorldModelConfig), args.tokenizer)
    g = trainer.model.grid
    what = "tokens" if trainer.tokenizer.discrete else f"latents of {trainer.tokenizer.latent_channels} floats"
    say(f"training a {trainer.model.family} world model ({trainer.model.num_parameters():,} parameters) over "
        f"{g.frames}x{g.height}x{g.width} {what} per clip on {trainer.clips.summary()} -> {trainer.run_dir}")
    return _run_trainer(trainer, "render3d video train")


# ----- generation -----------------------------------------------------------------------------------------
def cmd_video_generate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import torch

    from render3d.video.conditioning import plan, render_views
    from render3d.video.generate import load_video_model
    from render3d.video.output import write_clip

    model = load_video_model(args.model, args.decode)
    frames = args.frames or model.chunk_frames
    cond = plan(args.first_frame, args.path, frames, model.size, model.scene_frame, args.degrees_per_frame)
    if args.compare and cond.scene is None:
        raise Render3DError("--compare needs a 3D scene to render: pass a run folder or 'default' as --first-frame, not an image")
    gen = torch.Generator().manual_seed(args.seed)
    video = model.generate(cond.first[None], cond.K[None], cond.c2w[None], args.temperature, gen)[0]
    reference = render_views(cond.scene, cond.K, cond.c2w, model.size) if args.compare else None
    out = write_clip(video, args.out, model.fps, args.scale, reference)
    print(f"generated {len(video)} frames from {cond.description} -> {out}" + (" (left: generated, right: 3D render)" if args.compare else ""))
    if reference is not None:
        from render3d.video.evaluate import frame_scores

        psnrs, _ = frame_scores(video[None, 1:], reference[None, 1:])
        print("PSNR of each generated frame against the 3D render (dB): " + " ".join(f"{v:.1f}" for v in psnrs))
    return 0


# ----- evaluation -------------------------------------------------------------------------------------------
def cmd_video_eval(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.files import write_json
    from render3d.video.checkpoint import checkpoint_kind
    from render3d.video.clips import load_clips

    clips = load_clips(args.clips)
    kind = checkpoint_kind(args.model)
    if kind == "video-tokenizer":
        from render3d.video.evaluate import reconstruction_metrics
        from render3d.video.tokenizer import load_tokenizer

        result = {"model": str(args.model), "kind": kind, **reconstruction_metrics(load_tokenizer(args.model), clips.test, limit=args.limit)}
    else:
        from render3d.video.evaluate import world_model_metrics, write_curves_plot
        from render3d.video.generate import load_video_model

        result = {"model": str(args.model), "kind": kind,
                  **world_model_metrics(load_video_model(args.model, args.decode), clips, args.limit, args.temperature, frechet=args.frechet)}
        if args.out:
            write_curves_plot(result, Path(args.out) / "psnr_curve.png", "psnr")
            write_curves_plot(result, Path(args.out) / "ssim_curve.png", "ssim")
    result["clips_set"] = clips.summary()
    if args.out:
        write_json(result, Path(args.out) / "metrics.json")
    shown = {k: v for k, v in result.items() if k != "curves"}
    print(json.dumps(shown, indent=2))
    if "curves" in result:
        print(curve_table(result["curves"]))
    return 0


def curve_table(curves: dict[str, dict[str, list[float]]]) -> str:
    """The per-frame PSNR / SSIM curves as a Markdown table (frames 1, 2, ... into the future)."""
    names = list(curves)
    head = "| frame | " + " | ".join(f"{n} PSNR | {n} SSIM" for n in names) + " |"
    rule = "|---|" + "---|---|" * len(names)
    rows = [f"| {f} | " + " | ".join(f"{curves[n]['psnr'][f]:.2f} | {curves[n]['ssim'][f]:.3f}" for n in names) + " |"
            for f in range(1, len(curves[names[0]]["psnr"]))]
    return "\n".join([head, rule, *rows])


# ----- the parser -------------------------------------------------------------------------------------------
def add_video_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``render3d video {data,tokenizer,train,generate,eval}`` to the main parser's subcommands."""
    from render3d.video.generate import DECODE_MODES
    from render3d.video.tokenizer import TokenizerConfig
    from render3d.video.train import TokenizerTrainConfig, TokenizerTrainOptions, VideoTrainConfig
    from render3d.video.world_model import WorldModelConfig

    video = sub.add_parser("video", help="video generation: clip data, tokenizer, world model, generate, eval",
                           description="Camera-controlled video generation: make clip datasets, train a causal video "
                                       "tokenizer and an action-conditioned world model, generate and evaluate clips.")
    vsub = video.add_subparsers(dest="video_command", required=True, metavar="ACTION")

    data = vsub.add_parser("data", help="make a clip dataset", description="Make clips from the bundled default scene ('default'), "
                           "a trained run / checkpoint / .ply / .splat (rendered along random smooth camera paths, with poses), "
                           "or a video file (cut into clips, no poses). A fixed held-out split is made too.")
    data.add_argument("source", help="default, a run folder / checkpoint / .ply / .splat, or a video file")
    data.add_argument("--clips", type=int, default=200, help="training clips (default: 200)")
    data.add_argument("--test-clips", type=int, default=0, help="held-out clips (default: max(2, clips / 8))")
    data.add_argument("--frames", type=int, default=17, help="frames per clip, 1 + 4k (default: 17)")
    data.add_argument("--size", type=int, default=64, help="frame width and height, a multiple of 8 (default: 64)")
    data.add_argument("--seed", type=int, default=0, help="camera-path seed (default: 0)")
    data.add_argument("--frame-step", type=int, default=1, help="video files: take every n-th frame (default: 1)")
    data.add_argument("--test-fraction", type=float, default=0.2, help="video files: hold out the last fraction of the video (default: 0.2)")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    data.set_defaults(func=cmd_video_data)

    tok = vsub.add_parser("tokenizer", help="the causal video tokenizer", description="Train the causal video tokenizer.")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    tok_train = tok_sub.add_parser("train", help="train a tokenizer", description="Train a continuous or discrete (FSQ) causal "
                                   "video tokenizer on a clip folder; writes model.pt, config.json, history.json, metrics.json.")
    tok_train.add_argument("clips", nargs="?", help="clip folder (render3d video data)")
    tok_train.add_argument("--resume", default=None, help="continue a run folder (with --steps / --budget to extend it)")
    tok_train.add_argument("--nproc", type=int, default=1, help="train with this many local processes (data parallel; or launch with torchrun)")
    add_config_args(tok_train, TokenizerTrainConfig, title="training")
    add_config_args(tok_train, TokenizerTrainOptions, title="tokenizer training")
    add_config_args(tok_train, TokenizerConfig, title="tokenizer")
    tok_train.set_defaults(func=cmd_video_tokenizer_train)

    train = vsub.add_parser("train", help="train the world model", description="Train the action-conditioned world model on posed "
                            "clips: an autoregressive transformer over a discrete tokenizer's tokens, or a latent diffusion model "
                            "over a continuous tokenizer's latents.")
    train.add_argument("clips", nargs="?", help="clip folder with camera poses")
    train.add_argument("--tokenizer", default=None, help="run folder of a trained tokenizer (discrete: token model; continuous: latent diffusion)")
    train.add_argument("--resume", default=None, help="continue a run folder (with --steps / --budget to extend it)")
    train.add_argument("--nproc", type=int, default=1, help="train with this many local processes (data parallel; or launch with torchrun)")
    add_config_args(train, VideoTrainConfig, title="training")
    add_config_args(train, WorldModelConfig, title="world model")
    train.set_defaults(func=cmd_video_train)

    gen = vsub.add_parser("generate", help="generate a clip", description="Generate a clip from a first frame and a camera path.")
    gen.add_argument("model", help="world-model run folder (render3d video train)")
    gen.add_argument("--first-frame", required=True, help="an image file, 'default' (the bundled scene) or a trained run")
    gen.add_argument("--path", default="orbit", help="orbit, or a camera-path .json (default: orbit)")
    gen.add_argument("--frames", type=int, default=0, help="frames to make, the first included (default: the model's clip length)")
    gen.add_argument("--degrees-per-frame", type=float, default=4.0, help="--path orbit: azimuth step per frame (default: 4)")
    gen.add_argument("--temperature", type=float, default=0.0, help="token model: sampling temperature; 0 takes the most likely token (default: 0)")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    gen.add_argument("--decode", choices=DECODE_MODES, default="tokens", help=DECODE_HELP)
    gen.add_argument("--compare", action="store_true", help="with a run or 'default': the 3D render along the same path on the right")
    gen.add_argument("--scale", type=int, default=4, help="pixel upscale factor of the video (default: 4)")
    gen.add_argument("--out", default="gen.mp4", help="output .mp4, or a folder for PNG frames (default: gen.mp4)")
    gen.set_defaults(func=cmd_video_generate)

    ev = vsub.add_parser("eval", help="evaluate a tokenizer or world model", description="Tokenizer: reconstruction PSNR / SSIM of "
                         "the held-out clips. World model: PSNR / SSIM of each generated frame against the held-out clips along "
                         "their camera paths, beside copy-last-frame and the tokenizer's ceiling, and the Fréchet distance.")
    ev.add_argument("model", help="a tokenizer or world-model run folder")
    ev.add_argument("clips", help="clip folder")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N held-out clips")
    ev.add_argument("--temperature", type=float, default=0.0, help="world model: token sampling temperature (default: 0)")
    ev.add_argument("--decode", choices=DECODE_MODES, default="tokens", help="world model: " + DECODE_HELP)
    ev.add_argument("--frechet", action=argparse.BooleanOptionalAction, default=True, help="world model: the Fréchet distance (trains the zoo's "
                                                                                           "feature classifier once)")
    ev.add_argument("--out", default=None, help="folder for metrics.json and the curve plots")
    ev.set_defaults(func=cmd_video_eval)
