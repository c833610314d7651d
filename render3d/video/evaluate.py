"""Evaluating the video models on held-out clips (``render3d video eval``).

* tokenizer: reconstruction PSNR / SSIM over every frame of the held-out clips;
* world model: each held-out clip's first frame and camera path in, a clip out; PSNR / SSIM
  of every generated frame against the clip's own frame (the 3D scene's render), as a curve
  over frames into the future, beside two references on the same frames: **copy-last-frame**
  (the first frame held still) and the tokenizer's **reconstruction ceiling** (the clip
  encoded and decoded: the best the world model's tokens can look);
* frame quality: Fréchet distance between generated and real held-out frames in the feature
  space of the zoo's feature classifier (:mod:`render3d.zoo.metrics`), trained on the clips'
  training frames.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from render3d.metrics import ssim
from render3d.video.clips import ClipSet, ClipSplit, require_posed
from render3d.video.tokenizer import VideoTokenizer

MAX_PSNR = 100.0
FEATURE_SIZE = 32  # frames are compared in the zoo's feature space at this size (its classifier's cost grows with it)
CLASSIFIER_STEPS = 500
FIRST_FRAMES = 8  # the goal: beat copy-last-frame on average over this many generated frames


def frame_scores(pred: Tensor, target: Tensor) -> tuple[list[float], list[float]]:
    """PSNR and SSIM of each frame index, averaged over clips (``[N, T, 3, H, W]`` in ``[0, 1]``).

    PSNR is per image, then averaged; an exact copy counts as ``MAX_PSNR`` dB instead of infinity.
    """
    p = pred.permute(0, 1, 3, 4, 2).float()
    t = target.permute(0, 1, 3, 4, 2).float()
    mse = (p - t).pow(2).flatten(2).mean(-1).clamp_min(10 ** (-MAX_PSNR / 10))  # [N, T]
    psnrs = (-10 * torch.log10(mse)).mean(0).tolist()
    ssims = [float(ssim(p[:, f], t[:, f])) for f in range(p.shape[1])]
    return psnrs, ssims


@torch.no_grad()
def reconstruct_split(tokenizer: VideoTokenizer, split: ClipSplit, device: torch.device | str = "cpu",
                      batch: int = 8, limit: Optional[int] = None) -> Tensor:
    """The tokenizer's reconstructions ``[N, T, 3, H, W]`` of a split's clips."""
    n = min(len(split), limit or len(split))
    return torch.cat([tokenizer.reconstruct(split.video(slice(i, min(i + batch, n))).to(device)).cpu() for i in range(0, n, batch)])


def reconstruction_metrics(tokenizer: VideoTokenizer, split: ClipSplit, device: torch.device | str = "cpu",
                           limit: Optional[int] = None) -> dict[str, Any]:
    """Mean PSNR / SSIM over every frame of the split's clips (the first ``limit`` clips)."""
    tokenizer.eval()
    recon = reconstruct_split(tokenizer, split, device, limit=limit)
    target = split.video(slice(0, len(recon)))
    psnrs, ssims = frame_scores(recon, target)
    return {"psnr": round(sum(psnrs) / len(psnrs), 3), "ssim": round(sum(ssims) / len(ssims), 4), "clips": len(recon)}


def _summary(curve: list[float]) -> float:
    head = curve[1:1 + FIRST_FRAMES]
    return round(sum(head) / len(head), 3)


def frames_above(curve: list[float], baseline: list[float]) -> int:
    """The last future frame up to which ``curve`` stays above ``baseline`` (0: not even frame 1)."""
    last = 0
    for f in range(1, len(curve)):
        if curve[f] <= baseline[f]:
            break
        last = f
    return last


def frames_below(curve: list[float], baseline: list[float]) -> list[int]:
    """The future frames (1, 2, ...) where ``curve`` is not above ``baseline``."""
    return [f for f in range(1, len(curve)) if curve[f] <= baseline[f]]


@torch.no_grad()
def generate_split(model: Any, split: ClipSplit, batch: int = 8, limit: Optional[int] = None,
                   temperature: float = 0.0, seed: int = 0) -> tuple[Tensor, float]:
    """Generated clips ``[N, T, 3, H, W]`` from each clip's first frame and cameras; and generated frames/s."""
    n = min(len(split), limit or len(split))
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    out = []
    for i in range(0, n, batch):
        clip = split.video(slice(i, min(i + batch, n)))
        sl = slice(i, min(i + batch, n))
        out.append(model.generate(clip[:, 0], split.K[sl], split.c2w[sl], temperature, gen))
    seconds = time.perf_counter() - started
    video = torch.cat(out)
    return video, (n * (video.shape[1] - 1)) / max(seconds, 1e-9)


def world_model_metrics(model: Any, clips: ClipSet, limit: Optional[int] = None, temperature: float = 0.0,
                        frechet: bool = True, seed: int = 0) -> dict[str, Any]:
    """Curves and summaries of the module docstring on the held-out clips (the first ``limit``)."""
    require_posed(clips, "evaluating a world model")
    split = clips.test
    generated, fps = generate_split(model, split, limit=limit, temperature=temperature, seed=seed)
    n = len(generated)
    real = split.video(slice(0, n))
    copy_last = real[:, :1].expand_as(real)
    ceiling = reconstruct_split(model.tokenizer, split, model.device, limit=n)
    curves: dict[str, dict[str, list[float]]] = {}
    for name, video in (("generated", generated), ("copy_last_frame", copy_last), ("tokenizer_ceiling", ceiling)):
        p, s = frame_scores(video, real)
        curves[name] = {"psnr": [round(v, 3) for v in p], "ssim": [round(v, 4) for v in s]}
    g, c = curves["generated"]["psnr"], curves["copy_last_frame"]["psnr"]
    result: dict[str, Any] = {
        "clips": n,
        "frames": int(real.shape[1]),
        "temperature": temperature,
        "decode": getattr(model, "decode", "tokens"),
        "generated_frames_per_second": round(fps, 2),
        f"psnr_first_{FIRST_FRAMES}": {k: _summary(v["psnr"]) for k, v in curves.items()},
        f"ssim_first_{FIRST_FRAMES}": {k: _summary(v["ssim"]) for k, v in curves.items()},
        "margin_over_copy_last_db": round(_summary(g) - _summary(c), 3),
        "above_copy_last_until_frame": frames_above(g, c),
        "frames_not_above_copy_last": frames_below(g, c),
        "curves": curves,
    }
    if frechet:
        result["frechet"] = frechet_distances(clips, {"generated": generated, "copy_last_frame": copy_last, "tokenizer_ceiling": ceiling}, real)
    return result


def frame_data(clips: ClipSet, max_frames: int = 6000) -> Any:
    """The clips' frames at ``FEATURE_SIZE`` as zoo :class:`~render3d.zoo.data.ImageData` (for the zoo's feature classifier)."""
    from render3d.zoo.data import ImageData, resize

    def frames(split: ClipSplit) -> Tensor:
        f = split.frames.reshape(-1, *split.frames.shape[2:]).permute(0, 3, 1, 2)
        step = max(1, len(f) // max_frames)
        return resize(f[::step].contiguous(), min(FEATURE_SIZE, f.shape[-1]))

    return ImageData(name=f"video-{clips.name}", train=frames(clips.train), test=frames(clips.test), note=f"frames of {clips.summary()}")


def frechet_distances(clips: ClipSet, videos: dict[str, Tensor], real: Tensor, classifier_steps: int = CLASSIFIER_STEPS) -> dict[str, float]:
    """Fréchet distance of each video's frames after the first to the real ones, in the zoo's feature space.

    The zoo's feature classifier is trained (``classifier_steps``, then cached) on the clips'
    training frames. ``real_train_frames`` (training frames against the held-out ones) is the
    floor to read the others against.
    """
    from render3d.zoo.metrics import feature_classifier, frechet_distance

    from render3d.zoo.data import resize

    data = frame_data(clips)
    classifier = feature_classifier(data, steps=classifier_steps)
    size = data.spec.size

    def flat(video: Tensor) -> Tensor:  # the frames after the given first one, at the feature size
        frames = (video[:, 1:].reshape(-1, *video.shape[2:]).clamp(0, 1) * 255).round().to(torch.uint8)
        return resize(frames, size).float() / 255.0

    real_features = classifier.embed(flat(real))
    out = {name: round(frechet_distance(classifier.embed(flat(v)), real_features), 3) for name, v in videos.items()}
    n = min(len(data.train), len(real_features) * 4)
    out["real_train_frames"] = round(frechet_distance(classifier.embed(data.train[:n].float() / 255.0), real_features), 3)
    return out


def write_curves_plot(result: dict[str, Any], path: Path, metric: str = "psnr") -> Path:
    """The per-frame curves of :func:`world_model_metrics` as a PNG."""
    from render3d.video.plot import Series, line_plot

    labels = {"generated": "world model", "copy_last_frame": "copy last frame", "tokenizer_ceiling": "tokenizer ceiling"}
    series = []
    for key, label in labels.items():
        ys = result["curves"][key][metric][1:]
        series.append(Series(list(range(1, len(ys) + 1)), ys, label, dashed=key == "tokenizer_ceiling"))
    unit = " (dB)" if metric == "psnr" else ""
    title = f"held-out camera paths ({result['clips']} clips): {metric.upper()} of each generated frame vs the scene's render"
    return line_plot(series, path, title, "frames into the future", metric.upper() + unit)
