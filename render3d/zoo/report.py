"""``render3d zoo compare``: one table and one set of pictures for several trained zoo models.

For each run: parameters, training steps, steps/s and GFLOP/s (beside the matmul GFLOP/s the
trainer measured), sampling time, bits/dim (exact or ELBO), reconstruction MSE / PSNR
(encoders), and Fréchet distance, KID, precision / recall / density / coverage of its samples
against training images in the feature space of the data set's classifier. Three calibration
rows frame the distances: held-out real images (near zero), a 3x3 blur of them (blurry but
right) and uniform noise (far). For small data sets (faces) Fréchet distance is left out (it
needs thousands of images) and nearest-training-neighbour distances show how much the models
memorise. Writes ``report.md``, ``results.json`` and PNG grids.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from render3d.errors import Render3DError
from render3d.files import atomic_path, write_json, write_text_atomic
from render3d.zoo.base import ZooModel, load
from render3d.zoo.data import ImageData, load_images
from render3d.zoo.metrics import blur3x3, feature_classifier, memorization, nearest_neighbors, sample_quality
from render3d.zoo.nets import slerp


def image_grid(images: Tensor, nrow: int = 8, scale: int = 2, pad: int = 2) -> np.ndarray:
    """``[N, C, H, W]`` floats in ``[0, 1]`` -> one uint8 RGB picture, ``nrow`` images per row, upscaled."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, np.uint8)
    pics = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if c == 1:
        pics = np.repeat(pics, 3, axis=3)
    for i, pic in enumerate(pics):
        r, col = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = pic
    return canvas.repeat(scale, 0).repeat(scale, 1)


def save_grid(images: Tensor, path: Path, nrow: int = 8, scale: int = 2) -> Path:
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix, so PIL picks the same format
        Image.fromarray(image_grid(images, nrow, scale)).save(tmp)
    return path


def _batched(fn, x: Tensor, batch: int = 250) -> Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def interpolations(model: ZooModel, data: ImageData, rows: int = 4, columns: int = 8, seed: int = 0,
                   **options: Any) -> Optional[Tensor]:
    """``rows`` x ``columns`` images walking the latent space: between encoded held-out images
    (linear, for models that encode into a continuous latent) or between noise draws (spherical)."""
    if not model.has_latent:
        return None
    gen = torch.Generator().manual_seed(seed)
    w = torch.linspace(0, 1, columns)
    if model.can_encode:
        pick = torch.randperm(len(data.test), generator=gen)[: 2 * rows]
        z = model.encode(data.test[pick].float() / 255.0)
        za, zb = z[:rows], z[rows:]
        path = torch.stack([za + (zb - za) * wi for wi in w], 1)
    else:
        za, zb = model.sample_latent(rows, gen), model.sample_latent(rows, gen)
        path = torch.stack([slerp(za, zb, wi.expand(rows)) for wi in w], 1)
    flat = path.flatten(0, 1)
    if model.spec.num_classes:  # one class per row, so the row shows the latent changing, not the label
        options = {**options, "labels": torch.arange(rows).repeat_interleave(columns) % model.spec.num_classes}
    return model.generate(flat, **options)


# Below this many training images, models can memorise: report nearest-neighbour distances.
SMALL_DATA = 10_000


def nearest_pairs(samples: Tensor, train: Tensor, count: int = 32) -> Tensor:
    """``count`` samples each followed by its nearest training image (pixel RMS): a memorisation check."""
    _, index = nearest_neighbors(samples[:count], train)
    return torch.stack([samples[:count], train[index]], 1).flatten(0, 1)


def speed_stats(info: dict[str, Any]) -> dict[str, Any]:
    """steps/s, achieved GFLOP/s and the trainer's matmul GFLOP/s from a run's ``info``."""
    steps, seconds, gflop = info.get("steps"), info.get("train_seconds"), info.get("step_gflop")
    out: dict[str, Any] = {"matmul_gflops": info.get("matmul_gflops")}
    if steps and seconds:
        out["steps_per_second"] = steps / seconds
        if gflop:
            out["gflops"] = gflop * steps / seconds
    return out


@torch.no_grad()
def evaluate_model(model: ZooModel, data: ImageData, classifier, real_features: Tensor, n_samples: int,
                   n_eval: int, seed: int = 0, sample_options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One row of the comparison table, plus the images for its pictures (under ``_images``)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    options = sample_options or {}
    started = time.perf_counter()
    samples = torch.cat([model.sample(min(250, n_samples - i), generator=gen, **options) for i in range(0, n_samples, 250)])
    sample_seconds = time.perf_counter() - started
    row: dict[str, Any] = {
        "model": model.name,
        "description": model.description,
        "parameters": model.num_parameters(),
        "steps": model.info.get("steps"),
        "train_seconds": model.info.get("train_seconds"),
        **speed_stats(model.info),
        "sample_ms_per_image": round(1000 * sample_seconds / n_samples, 2),
        **sample_quality(real_features, classifier.embed(samples)),
        **model.stats(),
    }
    small = len(data.train) < SMALL_DATA
    if small:
        row.update(memorization(samples, data.train.float() / 255.0, data.test.float() / 255.0))
    test = data.test[:n_eval].float() / 255.0
    if model.likelihood:  # unconditional (no labels), so every model answers the same question
        bpd = _batched(model.bits_per_dim, test)
        row["bits_per_dim"] = float(bpd.mean())
        row["likelihood"] = model.likelihood
    images: dict[str, Tensor] = {"samples": samples[:64]}
    if small:
        images["nearest"] = nearest_pairs(samples, data.train.float() / 255.0)
    if model.can_encode:
        recon = _batched(model.reconstruct, test)
        mse = (recon - test).pow(2).flatten(1).mean(1)
        row["recon_mse"] = float(mse.mean())
        row["recon_psnr"] = float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())
        images["reconstructions"] = torch.cat([test[:8], recon[:8], test[8:16], recon[8:16]])
    interp = interpolations(model, data, **options)
    if interp is not None:
        images["interpolations"] = interp
    row["_images"] = images
    return row


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


COLUMNS = (
    ("model", "model"), ("parameters", "params"), ("steps", "steps"), ("steps_per_second", "steps/s"),
    ("gflops", "GFLOP/s"), ("matmul_gflops", "matmul GFLOP/s"), ("sample_ms_per_image", "sample ms/img"),
    ("bits_per_dim", "bits/dim"), ("recon_psnr", "recon PSNR"), ("frechet", "Fréchet ↓"), ("kid", "KID ↓"),
    ("precision", "precision"), ("recall", "recall"), ("nn_rms", "NN RMS"), ("copies", "copies"),
)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table of model and calibration rows; columns nobody filled in are left out."""
    columns = [(key, title) for key, title in COLUMNS if key == "model" or any(r.get(key) is not None for r in rows)]
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "---|" * len(columns)
    lines = []
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            if key == "bits_per_dim" and v is not None:
                cells.append(f"{v:.3f}" + (" (ELBO)" if r.get("likelihood") == "bound" else " (exact)"))
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *lines])


def calibration_rows(data: ImageData, classifier, real: Tensor, n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Held-out real images, a 3x3 blur of them and uniform noise, scored like the models."""
    held_out = data.test[: min(n, len(data.test))].float() / 255.0
    noise = torch.rand(min(n, len(data.train)), *held_out.shape[1:], generator=generator)
    rows = []
    for name, images in (("held-out real images", held_out), ("3x3 blur of held-out images", blur3x3(held_out)),
                         ("uniform noise", noise)):
        row = {"model": name, **sample_quality(real, classifier.embed(images))}
        if len(data.train) < SMALL_DATA:
            row.update(memorization(images, data.train.float() / 255.0, held_out))
        rows.append(row)
    return rows


def compare(runs: Sequence[str | Path], out: str | Path, n_samples: int = 2000, n_eval: int = 500, seed: int = 0,
            sample_options: Optional[dict[str, Any]] = None, progress: bool = True,
            classifier_steps: int = 1500) -> dict[str, Any]:
    """Evaluate every run on the data it was trained on and write the report to ``out``."""
    if not runs:
        raise Render3DError("name at least one run folder to compare")
    out = Path(out)
    models = [load(r) for r in runs]
    keys = {(m.info.get("data"), m.spec.size) for m in models}
    if len(keys) > 1:
        raise Render3DError(f"these runs were trained on different data ({sorted(map(str, keys))}): compare runs of one data set at a time")
    data_name, size = keys.pop()
    data = load_images(data_name or "fashion-mnist", size)
    classifier = feature_classifier(data, steps=classifier_steps)
    gen = torch.Generator().manual_seed(seed)
    n_real = min(n_samples, len(data.train))
    real = classifier.embed(data.train[torch.randperm(len(data.train), generator=gen)[:n_real]].float() / 255.0)
    references = calibration_rows(data, classifier, real, n_samples, gen)
    held_out = data.test[: min(n_samples, len(data.test))].float() / 255.0
    rows = []
    for run, model in zip(runs, models):
        if progress:
            print(f"evaluating {model.name} ({run})", flush=True)
        row = evaluate_model(model, data, classifier, real, n_samples, n_eval, seed, sample_options)
        row["run"] = str(run)
        images = row.pop("_images")
        for kind, pics in images.items():
            save_grid(pics, out / f"{model.name}_{kind}.png", nrow=8)
        row["pictures"] = sorted(f"{model.name}_{kind}.png" for kind in images)
        rows.append(row)
    result = {"data": data.summary(), "data_note": data.note, "classifier": getattr(classifier, "info", {}),
              "n_samples": n_samples, "n_eval": n_eval, "sample_options": sample_options or {},
              "models": rows, "references": references}
    out.mkdir(parents=True, exist_ok=True)
    save_grid(held_out[:64], out / "real_held_out.png")
    write_json(result, out / "results.json")
    write_text_atomic(out / "report.md", render_markdown(result))
    return result


def render_markdown(result: dict[str, Any]) -> str:
    """The report: data note, table (with the calibration rows), and every model's pictures."""
    clf = result["classifier"]
    acc = clf.get("held_out_accuracy")
    small = any("nn_rms" in r for r in result["references"])
    lines = [
        "# Generative model zoo: comparison", "",
        f"**Data.** {result['data']}. {result['data_note']}", "",
        f"**Metrics.** Sample quality uses {result['n_samples']} samples per model against up to as many training images, in "
        f"the 128-d feature space of a small CNN trained on this data ({clf.get('task')}, {clf.get('steps')} steps"
        + (f", held-out accuracy {acc:.1%}" if acc is not None else "") + "). Lower Fréchet / KID is better; "
        "precision / recall are in [0, 1]. Bits/dim and reconstructions use "
        f"{result['n_eval']} held-out images; bits/dim is exact for PixelCNN and an ELBO upper bound for the VAE and "
        "diffusion (a Monte Carlo estimate for diffusion). The calibration rows show what held-out real images, a 3x3 "
        "blur of them and uniform noise score. GFLOP/s counts the convolutions and matrix products of a training step; "
        "matmul GFLOP/s is a plain 2048x2048 float32 product measured by the same trainer (the machine's practical peak "
        "at that moment; on a shared machine it moves).",
        "",
    ]
    if small:
        lines += ["**Small data.** With this few images, Fréchet distance (a 128-d Gaussian fitted to each set) is "
                  "dominated by its estimation bias, so it is left out; KID is unbiased at any size. NN RMS is the median "
                  "pixel RMS distance from a sample to its nearest training image (for the held-out row: from an unseen "
                  "real image); copies is the fraction of samples nearer to a training image than any held-out image "
                  "is. Samples much nearer than held-out images are memorised training images; the *nearest* grids "
                  "show each sample beside its nearest training image.", ""]
    lines += [markdown_table(result["models"] + result["references"]), ""]
    for row in result["models"]:
        lines += [f"## {row['model']}: {row['description']}", "", f"run: `{row['run']}`", ""]
        extra = {k: v for k, v in row.items() if k.startswith("code_")}
        if extra:
            lines += ["codebook: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()), ""]
        for pic in row["pictures"]:
            kind = pic.split("_", 1)[1].removesuffix(".png")
            caption = {"samples": "samples", "reconstructions": "held-out images (rows 1, 3) and reconstructions (rows 2, 4)",
                       "interpolations": "latent interpolations, one pair per row",
                       "nearest": "pairs: a sample, then its nearest training image (pixel RMS)"}[kind]
            lines += [f"![{row['model']} {kind}]({pic})", "", f"*{caption}*", ""]
    lines += ["## Real held-out images", "", "![real](real_held_out.png)", ""]
    return "\n".join(lines)
