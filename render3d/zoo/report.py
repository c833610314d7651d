"""``render3d zoo compare``: one table and one set of pictures for several trained zoo models.

For each run: parameters, training steps and time, sampling time, bits/dim (exact or ELBO),
reconstruction MSE / PSNR (encoders), and Fréchet distance, KID, precision / recall / density /
coverage of its samples against training images in the feature space of the data set's
classifier. Two reference rows calibrate the distances: held-out real images (should be near
zero) and uniform noise (far). Writes ``report.md``, ``results.json`` and PNG grids.
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
from render3d.zoo.metrics import feature_classifier, sample_quality
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
        "sample_ms_per_image": round(1000 * sample_seconds / n_samples, 2),
        **sample_quality(real_features, classifier.embed(samples)),
        **model.stats(),
    }
    test = data.test[:n_eval].float() / 255.0
    if model.likelihood:  # unconditional (no labels), so every model answers the same question
        bpd = _batched(model.bits_per_dim, test)
        row["bits_per_dim"] = float(bpd.mean())
        row["likelihood"] = model.likelihood
    images: dict[str, Tensor] = {"samples": samples[:64]}
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
    ("model", "model"), ("parameters", "params"), ("steps", "steps"), ("train_seconds", "train s"),
    ("sample_ms_per_image", "sample ms/img"), ("bits_per_dim", "bits/dim"), ("recon_mse", "recon MSE"),
    ("recon_psnr", "recon PSNR"), ("frechet", "Fréchet ↓"), ("kid", "KID ↓"), ("precision", "precision"),
    ("recall", "recall"), ("density", "density"), ("coverage", "coverage"),
)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    lines = []
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            v = r.get(key)
            if key == "bits_per_dim" and v is not None:
                cells.append(f"{v:.3f}" + (" (ELBO)" if r.get("likelihood") == "bound" else " (exact)"))
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *lines])


def compare(runs: Sequence[str | Path], out: str | Path, n_samples: int = 500, n_eval: int = 500, seed: int = 0,
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
    held_out = data.test[: min(n_samples, len(data.test))].float() / 255.0
    references = [
        {"model": "held-out real images", **sample_quality(real, classifier.embed(held_out))},
        {"model": "uniform noise", **sample_quality(real, classifier.embed(torch.rand(n_real, *held_out.shape[1:], generator=gen)))},
    ]
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
    """The report: data note, table (with the reference rows), and every model's pictures."""
    clf = result["classifier"]
    acc = clf.get("held_out_accuracy")
    lines = [
        "# Generative model zoo: comparison", "",
        f"**Data.** {result['data']}. {result['data_note']}", "",
        f"**Metrics.** Sample quality uses {result['n_samples']} samples per model against as many training images, in the "
        f"128-d feature space of a small CNN trained on this data ({clf.get('task')}, {clf.get('steps')} steps"
        + (f", held-out accuracy {acc:.1%}" if acc is not None else "") + "). Lower Fréchet / KID is better; "
        "precision / recall / density / coverage are in [0, 1] (density can exceed 1). Bits/dim and reconstructions use "
        f"{result['n_eval']} held-out images; bits/dim is exact for PixelCNN and an ELBO upper bound for the VAE and "
        "diffusion (a Monte Carlo estimate for diffusion). The reference rows show what real held-out images and noise score.",
        "", markdown_table(result["models"] + result["references"]), "",
    ]
    for row in result["models"]:
        lines += [f"## {row['model']}: {row['description']}", "", f"run: `{row['run']}`", ""]
        extra = {k: v for k, v in row.items() if k.startswith("code_")}
        if extra:
            lines += ["codebook: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()), ""]
        for pic in row["pictures"]:
            kind = pic.split("_", 1)[1].removesuffix(".png")
            caption = {"samples": "samples", "reconstructions": "held-out images (rows 1, 3) and reconstructions (rows 2, 4)",
                       "interpolations": "latent interpolations, one pair per row"}[kind]
            lines += [f"![{row['model']} {kind}]({pic})", "", f"*{caption}*", ""]
    lines += ["## Real held-out images", "", "![real](real_held_out.png)", ""]
    return "\n".join(lines)
