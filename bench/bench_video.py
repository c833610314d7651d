"""Video generation on the default scene, CPU: tokenizers against the zoo's per-frame autoencoder, the world
model against copy-last-frame and the tokenizer's ceiling, Fréchet distance, and speeds.

    python bench/bench_video.py --clips runs/clips-default --out runs/bench-video \
        --tokenizer-budget 1200 --world-budget 1800

The clips come from ``render3d video data default --clips 1280 --test-clips 40 --frames 17 --size 64
--out runs/clips-default`` (made here when the folder is missing). Each model trains for its time
budget (seconds); a run folder that already holds ``metrics.json`` is reused, so an interrupted
bench continues. Two world models train for the world budget each: the token transformer over the
discrete tokenizer's tokens and the latent diffusion model over the continuous tokenizer's latents.
Prints Markdown tables and writes ``report.md``, ``results.json``, the curve plots and a strip of
generated orbit frames (``orbit_first_frames.png``) into OUT.
``--other-footage CLIPS ...`` also scores the tokenizers and the per-frame autoencoders on the
held-out clips of footage they never saw (a real video, another scene):

    render3d video data /usr/share/doc/opencv-doc/examples/data/vtest.avi --clips 20 --test-clips 20 --frame-step 2 --out runs/ood-vtest
    render3d video data ../shared/data/splat_ply/inria_3dgs_iter7000.ply --clips 4 --test-clips 20 --out runs/ood-ply
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import describe

from render3d.files import write_json, write_text_atomic
from render3d.video.clips import ClipSet, load_clips
from render3d.video.evaluate import FIRST_FRAMES, frame_scores, world_model_metrics, write_curves_plot
from render3d.video.tokenizer import TokenizerConfig, load_tokenizer
from render3d.video.train import (
    TokenizerTrainConfig, TokenizerTrainer, TokenizerTrainOptions, VideoTrainConfig, WorldModelTrainer,
)
from render3d.video.world_model import WorldModelConfig


def clip_set(path: Path) -> ClipSet:
    if not (path / "clips.pt").is_file():
        from render3d.video.sources import ClipRequest, make_clips

        make_clips("default", ClipRequest(clips=1280, test_clips=40, frames=17, size=64)).save(path)
    return load_clips(path)


def finished(run: Path) -> dict[str, Any] | None:
    file = run / "metrics.json"
    return json.loads(file.read_text()) if file.is_file() else None


def train_config(out: Path, budget: float, batch: int) -> VideoTrainConfig:
    return VideoTrainConfig(steps=10**9, budget=budget, batch_size=batch, out=str(out), save_every=200, progress=False)


# ----- tokenizers and the zoo baseline ------------------------------------------------------------------
@torch.no_grad()
def other_footage(reconstruct: Any, others: list[ClipSet]) -> dict[str, float]:
    """Mean reconstruction PSNR on the held-out clips of each other clip set (footage the model never saw)."""
    scores = {}
    for other in others:
        video = other.test.video(slice(None))
        recon = torch.cat([reconstruct(video[i:i + 8]) for i in range(0, len(video), 8)])
        psnrs, _ = frame_scores(recon, video)
        scores[other.name] = round(sum(psnrs) / len(psnrs), 3)
    return scores


def tokenizer_row(clips: ClipSet, out: Path, kind: str, budget: float, width: int, others: list[ClipSet]) -> dict[str, Any]:
    """Equivalent to ``render3d video tokenizer train CLIPS --kind KIND --width W --window 9 --budget B`` (its default batch)."""
    run = out / f"tok-{kind}"
    if finished(run) is None:
        TokenizerTrainer(
            clips, train_config(run, budget, TokenizerTrainConfig.batch_size), TokenizerConfig(kind=kind, width=width), TokenizerTrainOptions(window=9)
        ).run()
    metrics = finished(run)
    tok = load_tokenizer(run).eval()
    c, _k, h, w = tok.latent_shape(17, 64, 64)
    if tok.discrete:
        latent = f"{h}x{w} tokens of FSQ {tok.config.levels} per 4 frames"
        per_frame = f"{h * w * math.log2(tok.codebook_size) / 4:.0f} bits"
    else:
        latent, per_frame = f"{c}x{h}x{w} floats per 4 frames", f"{c * h * w // 4} floats"
    return {
        "model": f"causal tokenizer, {kind}",
        "latent": latent,
        "per_frame": per_frame,
        "parameters": tok.num_parameters(),
        "steps": metrics["steps"],
        "train_s": metrics["train_seconds"],
        "frames_per_s": metrics["frames_per_second"],
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "other_footage": other_footage(tok.reconstruct, others),
        "run": str(run),
    }


def zoo_ae_row(clips: ClipSet, out: Path, latent: int, budget: float, others: list[ClipSet]) -> dict[str, Any]:
    """The zoo's autoencoder trained on single frames of the training clips, evaluated on the held-out clips."""
    from render3d.zoo.ae import AEConfig
    from render3d.zoo.base import load
    from render3d.zoo.data import ImageData
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    run = out / f"zoo-ae-{latent}"
    # batch 16 frames: after 240 s it scores 21.06 dB against 20.13 for 64 (the tokenizer's batch was tuned the same way)
    if not (run / "model.pt").is_file():
        frames = lambda split: split.frames.reshape(-1, *split.frames.shape[2:]).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        data = ImageData(name="clip-frames", train=frames(clips.train), test=frames(clips.test), note="frames of the video clips")
        cfg = ZooTrainConfig(data="clip-frames", size=64, steps=10**9, budget=budget, batch_size=16, out=str(run), save_every=0, progress=False, overwrite=True)
        ZooTrainer("ae", cfg, AEConfig(latent=latent, hidden=32, lr=1e-3), data=data).run()
    model = load(run).eval()
    info = model.info
    per_frame = lambda video: torch.stack([model.reconstruct(v) for v in video])  # noqa: E731
    with torch.no_grad():
        video = clips.test.video(slice(None))
        recon = per_frame(video)
    psnrs, ssims = frame_scores(recon, video)
    return {
        "model": f"zoo ae (per frame), latent {latent}",
        "latent": f"{latent} floats per frame",
        "per_frame": f"{latent} floats",
        "parameters": model.num_parameters(),
        "steps": info["steps"],
        "train_s": info["train_seconds"],
        "frames_per_s": round(info["steps"] * info["batch_size"] / max(info["train_seconds"], 1e-9), 2),
        "psnr": round(sum(psnrs) / len(psnrs), 3),
        "ssim": round(sum(ssims) / len(ssims), 4),
        "other_footage": other_footage(per_frame, others),
        "run": str(run),
    }


def tokenizer_table(rows: list[dict[str, Any]]) -> str:
    others = list(rows[0]["other_footage"]) if rows else []
    lines = [
        "| model | latent | per frame | parameters | steps | train s | train frames/s | PSNR (dB) | SSIM |" + "".join(f" PSNR on {o} (dB) |" for o in others),
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(others),
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['latent']} | {r['per_frame']} | {r['parameters']:,} | {r['steps']} | {r['train_s']:.0f} | "
            f"{r['frames_per_s']:.1f} | {r['psnr']:.2f} | {r['ssim']:.3f} |" + "".join(f" {r['other_footage'][o]:.2f} |" for o in others)
        )
    return "\n".join(lines)


# ----- the world model --------------------------------------------------------------------------------------
# Each world-model evaluation: (run folder under OUT, tokenizer run, --decode mode of `render3d video eval`).
WORLD_MODELS = {
    "tokens": ("world", "tok-discrete", "tokens"),
    "mean": ("world", "tok-discrete", "mean"),
    "diffusion": ("world-diffusion", "tok-continuous", "tokens"),
    "diffusion_mean": ("world-diffusion", "tok-continuous", "mean"),
}
WORLD_NOTES = {
    "tokens": "token transformer, decoding the generated tokens (`--decode tokens`, the default)",
    "mean": "token transformer, decoding each generated frame's expected FSQ values (`--decode mean`: its mean prediction)",
    "diffusion": "latent diffusion over the continuous tokenizer's latents, sampling (20 DDIM steps per latent frame)",
    "diffusion_mean": "latent diffusion, its mean prediction (`--decode mean`: one denoising step from pure noise)",
}
CURVE_SUFFIX = {"tokens": "", "mean": "_mean", "diffusion": "_diffusion", "diffusion_mean": "_diffusion_mean"}


def world_model(clips: ClipSet, out: Path, budget: float, config: WorldModelConfig, batch: int) -> dict[str, Any]:
    """Train each world model (``render3d video train CLIPS --tokenizer TOK --dim D --layers L --heads H --batch-size B
    --budget S``: the token transformer on the discrete tokenizer, the latent diffusion model on the continuous one)
    and evaluate it on the held-out camera paths (``render3d video eval RUN CLIPS --decode MODE``)."""
    from render3d.video.generate import load_video_model

    for run, tokenizer, _decode in dict.fromkeys(WORLD_MODELS.values()):
        if finished(out / run) is None:
            WorldModelTrainer(clips, train_config(out / run, budget, batch), config, out / tokenizer).run()
    results = {}
    for label, (run, _tokenizer, decode) in WORLD_MODELS.items():
        started = time.perf_counter()
        result = world_model_metrics(load_video_model(out / run, decode), clips)
        result["eval_seconds"] = round(time.perf_counter() - started, 1)
        result["train"] = finished(out / run)
        write_curves_plot(result, out / f"world_psnr_curve{CURVE_SUFFIX[label]}.png", "psnr")
        write_curves_plot(result, out / f"world_ssim_curve{CURVE_SUFFIX[label]}.png", "ssim")
        results[label] = result
    orbit_strip(out)
    return results


STRIP_FRAMES = (4, 8, 12, 16)


@torch.no_grad()
def orbit_strip(out: Path) -> None:
    """``orbit_first_frames.png``: one row per world-model evaluation (token model decoding tokens, its mean, the latent
    diffusion model's sample, its mean), frames 4, 8, 12, 16 of an orbit from the default scene's first frame (``render3d video generate RUN
    --first-frame default --path orbit --compare``), each beside the render."""
    from render3d.images import write_png
    from render3d.video.clips import frame_grid
    from render3d.video.conditioning import plan, render_views
    from render3d.video.generate import load_video_model
    from render3d.video.output import clip_frames

    models = [load_video_model(out / run, decode) for run, _tokenizer, decode in WORLD_MODELS.values()]
    first = models[0]  # every model makes the same frame size from the same clips: one path, one render
    cond = plan("default", "orbit", max(STRIP_FRAMES) + 1, first.size, first.scene_frame)
    reference = render_views(cond.scene, cond.K, cond.c2w, first.size)
    rows = []
    for model in models:
        video = model.generate(cond.first[None], cond.K[None], cond.c2w[None], 0.0, torch.Generator().manual_seed(0))[0]
        frames = clip_frames(video, 2, reference)
        rows.append(np.stack([frames[i] for i in STRIP_FRAMES]))
    write_png(out / "orbit_first_frames.png", frame_grid(rows, pad=4))


def world_tables(result: dict[str, Any]) -> str:
    curves = result["curves"]
    names = {"generated": "world model", "copy_last_frame": "copy last frame", "tokenizer_ceiling": "tokenizer ceiling"}
    lines = ["| frames into the future | " + " | ".join(f"{n} PSNR / SSIM" for n in names.values()) + " |", "|---|" + "---|" * len(names)]
    for f in range(1, len(curves["generated"]["psnr"])):
        lines.append(f"| {f} | " + " | ".join(f"{curves[k]['psnr'][f]:.2f} / {curves[k]['ssim'][f]:.3f}" for k in names) + " |")
    p, s = result[f"psnr_first_{FIRST_FRAMES}"], result[f"ssim_first_{FIRST_FRAMES}"]
    lines += ["", f"| mean of frames 1-{FIRST_FRAMES} | " + " | ".join(f"{p[k]:.2f} / {s[k]:.3f}" for k in names) + " |"]
    below = result["frames_not_above_copy_last"]
    summary = (
        f"\nworld model minus copy-last-frame, frames 1-{FIRST_FRAMES}: {result['margin_over_copy_last_db']:+.2f} dB; "
        f"PSNR above copy-last-frame at every frame 1-{len(curves['generated']['psnr']) - 1}"
        + (f" except frame(s) {', '.join(map(str, below))}" if below else "")
    )
    fd = result.get("frechet")
    if fd:
        summary += "\n\nFréchet distance to the held-out frames (zoo feature space, 32 px): " + ", ".join(f"{k} {v:.2f}" for k, v in fd.items())
    return "\n".join(lines) + summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", default="runs/clips-default", help="clip folder (made when missing)")
    parser.add_argument("--out", default="runs/bench-video", help="folder for runs, plots and the report")
    parser.add_argument("--tokenizer-budget", type=float, default=1200.0, help="training seconds per tokenizer and per zoo AE")
    parser.add_argument("--world-budget", type=float, default=1800.0, help="training seconds of each world model")
    parser.add_argument("--tokenizer-width", type=int, default=32, help="tokenizer --width")
    parser.add_argument("--world-batch", type=int, default=8, help="world-model clips per batch")
    parser.add_argument("--world-dim", type=int, default=128, help="world-model --dim")
    parser.add_argument("--world-layers", type=int, default=4, help="world-model --layers")
    parser.add_argument("--world-heads", type=int, default=4, help="world-model --heads (key/value heads: half as many)")
    parser.add_argument("--stage", choices=("tokenizers", "world", "all"), default="all", help="which part to run (default: all)")
    parser.add_argument(
        "--other-footage",
        nargs="*",
        default=[],
        metavar="CLIPS",
        help="clip folders of other footage: the tokenizers and zoo AEs are also scored on their held-out clips",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a busy 2-core machine a second thread only spins)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    machine_before = describe()
    print(f"machine: {machine_before}", flush=True)
    clips = clip_set(Path(args.clips))
    width = args.tokenizer_width
    others = [load_clips(c) for c in args.other_footage]
    rows = (
        [
            tokenizer_row(clips, out, "continuous", args.tokenizer_budget, width, others),
            zoo_ae_row(clips, out, 256, args.tokenizer_budget, others),
            tokenizer_row(clips, out, "discrete", args.tokenizer_budget, width, others),
            zoo_ae_row(clips, out, 64, args.tokenizer_budget, others),
        ]
        if args.stage != "world"
        else []
    )
    tokenizers = tokenizer_table(rows)
    print(f"\ntokenizers, held-out clips ({len(clips.test)} x 17 frames, 64x64):\n{tokenizers}", flush=True)
    if args.stage == "tokenizers":
        return
    config = WorldModelConfig(dim=args.world_dim, layers=args.world_layers, heads=args.world_heads, kv_heads=max(1, args.world_heads // 2))
    by_model = world_model(clips, out, args.world_budget, config, args.world_batch)
    worlds = "\n\n".join(f"### {WORLD_NOTES[d]}\n\n{world_tables(r)}" for d, r in by_model.items())
    world = by_model["tokens"]
    speed = "\n".join(
        f"{'latent diffusion' if label == 'diffusion' else 'token transformer'}: {r['train']['parameters']:,} parameters, {r['train']['steps']} steps in "
        f"{r['train']['train_seconds']:.0f} s ({r['train']['frames_per_second']:.1f} training frames/s); generation "
        f"{r['generated_frames_per_second']:.1f} frames/s (tokenizer encode + world model + decode, batch 8, CPU)"
        for label, r in by_model.items()
        if label in ("tokens", "diffusion")
    )
    machine_after = describe()
    print(f"\nworld model on held-out camera paths ({world['clips']} clips):\n{worlds}\n\n{speed}\nmachine after: {machine_after}")
    report = (
        f"# Video bench\n\nmachine before: {machine_before}\nmachine after: {machine_after}\n\n"
        f"`python bench/bench_video.py --clips {args.clips} --out {args.out} --tokenizer-budget {args.tokenizer_budget:g} "
        f"--tokenizer-width {width} --world-budget {args.world_budget:g} --world-dim {args.world_dim} "
        f"--world-layers {args.world_layers} --world-heads {args.world_heads} --threads {torch.get_num_threads()}"
        + (f" --other-footage {' '.join(args.other_footage)}" if args.other_footage else "")
        + f"`\n\n## Tokenizers (held-out clips)\n\n{tokenizers}\n\n"
        f"## World model (held-out camera paths)\n\n{worlds}\n\n{speed}\n"
    )
    write_text_atomic(out / "report.md", report)
    write_json({"machine": [machine_before, machine_after], "tokenizers": rows, "world": by_model, "world_config": asdict(config)}, out / "results.json")


if __name__ == "__main__":
    main()
