"""Real-capture faults on the default scene: changing exposure, and camera poses that are a little off.

    python bench/bench_capture.py [--case exposure|poses|multiscale|real|all] [--steps 1200] [--resolution 128]
                                  [--method splat|nerf] [--refine-steps 100] [--data ../shared/data] [--scenes fern,fox]

``exposure``: each training image is multiplied by a random exposure in [0.6, 1.5] and a
white-balance factor per channel in [0.95, 1.05] (seeded), then clipped to [0, 1]; test images
are left as rendered. Runs: clean images; changed images; changed images with
``--splat.appearance exposure``; and with ``--splat.appearance embedding``.

``poses``: each training camera is turned by 1 degree about a random axis and moved by 2% of
the scene scale in a random direction (seeded); test cameras are exact. Runs: clean poses;
disturbed poses; disturbed poses with ``--splat.pose-opt``, and with its earlier defaults (corrections
learning from the first step at a tenth of today's learning rate). Test PSNR is given at the clean test
poses and after fitting each test pose to the trained scene (``eval --refine-test-poses``). The camera error
columns compare the poses training ends with (refined where pose-opt is on) against the clean ones, as
they are and after the one rigid map that best aligns them (``align_poses``).

``--method nerf`` runs the exposure and poses cases with the hash-grid NeRF (``--nerf.appearance``,
``--nerf.pose-opt``) instead of the splats; ``--refine-steps`` sets the steps of each test view's pose fit.

``multiscale`` (the Mip-NeRF protocol): train at ``--resolution`` in the classic mode and with
``--splat.antialiased``; score the test views at full size, at 1/2, 1/4 and 1/8 (the ground truth
area-averaged) and zoomed in 2x (the same cameras at twice the resolution, against the scene
rendered at twice the resolution). Its own table: test PSNR per scale, and
``bench/results/capture/multiscale.png``: the first test view at each scale (rows: ground truth,
classic, antialiased; shown at full size, pixels repeated).

``real``: real captures from ``--data`` (skipped with a note where absent): LLFF fern at
504x378 with its official poses (``--downscale 8``, every 8th photo held out) and the fox
hand-held photos at 270x480 (``--downscale 4``, its ``transforms.json`` poses); ``fern-sfm`` is fern
with the poses ``render3d data process`` finds for its 1008x756 photos, trained at 504x378 (not in
the default ``--scenes``). Runs: the default
recipe; with ``--splat.pose-opt``; ``--splat.appearance exposure`` (or ``embedding``); ``--splat.antialiased``;
all three (pose-opt, exposure, antialiased).
Scored at the given test poses, after fitting each test pose against the trained scene
(``render3d eval --refine-test-poses``, 100 steps) and with NeRF-W's appearance fit
(``render3d eval --appearance-fit half``), with SSIM and the training time. The first test photo and each
run's render of it (at the given pose), side by side: ``bench/results/capture/real-SCENE.png``.

All runs use the default splat recipe, the same steps and the same seed, and print one table:
test PSNR / SSIM at the given test poses, camera errors, seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from render3d.datasets import load_scene  # noqa: E402
from render3d.datasets.synthetic import generate_scene  # noqa: E402
from render3d.evaluate import evaluate_split, refine_split_poses  # noqa: E402
from render3d.pose_correction import align_poses, pose_changes, so3_exp  # noqa: E402
from render3d.nerf.method import NerfConfig  # noqa: E402
from render3d.splat.method import SplatConfig  # noqa: E402
from render3d.train import TrainConfig, Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "capture"


def change_exposure(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` images, each scaled by its own exposure and white balance (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    exposure = 0.6 + 0.9 * torch.rand(n, 1, 1, 1, generator=generator)
    balance = 0.95 + 0.1 * torch.rand(n, 1, 1, 3, generator=generator)
    return (images.float() * exposure * balance).clamp(0, 255).round().to(torch.uint8)


def disturb_poses(c2w: torch.Tensor, distance: float, degrees: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Camera-to-world ``[N, 4, 4]``, each turned by ``degrees`` about a random axis and moved by ``distance``."""
    generator = torch.Generator().manual_seed(seed)
    n = len(c2w)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    out = c2w.clone()
    out[:, :3, :3] = out[:, :3, :3] @ so3_exp(axis * math.radians(degrees))
    out[:, :3, 3] += direction * distance
    return out


SCALES = (1.0, 0.5, 0.25, 0.125, 2.0)


def scale_name(factor: float) -> str:
    return "full size" if factor == 1 else f"{factor:g}x (zoomed in)" if factor > 1 else f"1/{round(1 / factor)}"


def target_at_scale(split, i: int, factor: float, zoomed=None) -> torch.Tensor:
    """View ``i``'s ground truth ``[H, W, 3]`` at ``factor`` times its size: area-averaged below full size, from
    ``zoomed`` (the same views rendered at ``factor`` times the size) above it."""
    import torch.nn.functional as F

    if factor > 1:
        return zoomed.image_float(i)
    target = split.image_float(i)
    if factor < 1:
        size = (round(target.shape[0] * factor), round(target.shape[1] * factor))
        target = F.interpolate(target.permute(2, 0, 1)[None], size=size, mode="area")[0].permute(1, 2, 0)
    return target


def render_like(model, split, i: int, target: torch.Tensor) -> torch.Tensor:
    """``model``'s render ``[H, W, 3]`` of view ``i`` at the size of ``target``."""
    return model.render(split.cameras[i].resized(target.shape[1], target.shape[0])).rgb[0].detach().cpu()


def psnr_at_scale(model, split, factor: float, zoomed=None) -> float:
    """Mean test PSNR of ``model`` on ``split``'s cameras scaled by ``factor`` (:func:`target_at_scale`)."""
    from render3d.metrics import psnr

    scores = []
    for i in range(len(split)):
        target = target_at_scale(split, i, factor, zoomed)
        scores.append(psnr(render_like(model, split, i, target), target))
    return sum(scores) / len(scores)


def write_scale_grid(path: Path, models, split, zoomed) -> None:
    """Test view 0 at the scales below full size and at full size: rows ground truth, then each model."""
    from render3d.images import to_uint8, write_png

    full = split.image_float(0).shape[0]
    rows = []
    for model in (None, *models):
        cells = []
        for factor in (1.0, 0.5, 0.25, 0.125):
            target = target_at_scale(split, 0, factor, zoomed)
            image = target if model is None else render_like(model, split, 0, target)
            repeat = full // image.shape[0]
            cells.append(image.repeat_interleave(repeat, 0).repeat_interleave(repeat, 1))
        rows.append(torch.cat(cells, dim=1))
    write_png(path, to_uint8(torch.cat(rows, dim=0)))


def multiscale(tmp: Path, steps: int, resolution: int) -> list[str]:
    """Train classic and antialiased at ``resolution``; the table rows of their test PSNR per scale."""
    scene = load_scene(generate_scene(tmp / "scene", resolution=resolution))
    zoomed = load_scene(generate_scene(tmp / "scene2x", resolution=2 * resolution)).test
    rows, models = [], []
    for antialiased in (False, True):
        config = TrainConfig(steps=steps, out=str(tmp / f"multiscale{int(antialiased)}"), save_every=0, progress=False)
        start = time.perf_counter()
        trainer = Trainer(config, SplatConfig(antialiased=antialiased), scene=scene)
        trainer.run()
        seconds = time.perf_counter() - start
        model = trainer.method.model
        models.append(model)
        scores = [psnr_at_scale(model, scene.test, factor, zoomed) for factor in SCALES]
        name = "--splat.antialiased" if antialiased else "classic"
        rows.append(f"| {name} | " + " | ".join(f"{value:.2f} dB" for value in scores) + f" | {seconds:.0f} |")
        print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_scale_grid(RESULTS / "multiscale.png", models, scene.test, zoomed)
    return rows


REAL_SCENES = {  # --scenes key: (folder under --data, --downscale, photos to pose with `render3d data process` first, or None)
    "fern": ("fern", 8, None),
    "fox": ("fox", 4, None),
    "fern-sfm": ("fern", 2, "images_4"),
}


def real_scene(data: Path, tmp: Path, name: str):
    """The real capture ``name`` (:data:`REAL_SCENES`), None where its data is absent. ``fern-sfm`` is fern's
    1008x756 photos posed by ``render3d data process`` (pycolmap), trained at 504x378 like ``fern``."""
    from render3d.process import ProcessConfig, process_capture

    folder, downscale, photos = REAL_SCENES[name]
    if not (data / folder).is_dir():
        return None
    path = data / folder
    if photos is not None:
        path = tmp / name
        process_capture([data / folder / photos], ProcessConfig(out=str(path), progress=False))
    return load_scene(path, downscale=downscale)
REAL_VARIANTS = {  # --variants key: (row name, method options)
    "default": ("default recipe", {}),
    "pose-opt": ("--splat.pose-opt", {"pose_opt": True}),
    "exposure": ("--splat.appearance exposure", {"appearance": "exposure"}),
    "embedding": ("--splat.appearance embedding", {"appearance": "embedding"}),
    "antialiased": ("--splat.antialiased", {"antialiased": True}),
    "all": ("all three", {"pose_opt": True, "appearance": "exposure", "antialiased": True}),
}


def real_captures(tmp: Path, data: Path, scenes: list[str], variants: list[str], steps: int,
                  refine_steps: int = 100) -> list[str]:
    """Train each variant on each real capture; table rows (scene, run, PSNR at given / refined test poses, SSIM, s)."""
    from render3d.evaluate import evaluate_appearance_fit

    rows = []
    for name in scenes:
        scene = real_scene(data, tmp, name)
        if scene is None:
            print(f"{name}: skipped, no {data / REAL_SCENES[name][0]}", flush=True)
            continue
        views = [scene.test.image_float(0)]  # the photo, then each run's render of it
        for variant, options in (REAL_VARIANTS[key] for key in variants):
            config = TrainConfig(steps=steps, out=str(tmp / f"{name}-{len(rows)}"), save_every=0, progress=False)
            start = time.perf_counter()
            trainer = Trainer(config, SplatConfig(**options), scene=scene)
            metrics = trainer.run()
            seconds = time.perf_counter() - start
            model = trainer.method.model
            refined = evaluate_split(model, refine_split_poses(model, scene.test, float(scene.scene_scale), refine_steps))
            fitted = evaluate_appearance_fit(model, scene.test)
            views.append(render_like(model, scene.test, 0, views[0]))
            rows.append(f"| {name} | {variant} | {metrics['psnr']:.2f} dB | {refined['psnr']:.2f} dB | {fitted['psnr']:.2f} dB "
                        f"| {metrics['ssim']:.3f} | {seconds:.0f} |")
            print(rows[-1], flush=True)
        write_side_by_side(RESULTS / f"real-{name}.png", views)
    return rows


def write_side_by_side(path: Path, images: list[torch.Tensor]) -> None:
    """``images [H, W, 3]`` in one row, a 4-pixel white gap between them, as a PNG."""
    from render3d.images import to_uint8, write_png

    gap = torch.ones(images[0].shape[0], 4, 3)
    cells = [cell for image in images for cell in (image, gap)][:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, to_uint8(torch.cat(cells, dim=1)))


def method_config(method: str, **options):
    """The ``method``'s config (``splat`` or ``nerf``) with ``options``."""
    return SplatConfig(**options) if method == "splat" else NerfConfig(**options)


def cases(clean, which: str, method: str = "splat") -> list[tuple[str, object, object]]:
    """(name, scene, method config) of each run of the chosen cases."""
    runs = []
    config = partial(method_config, method)
    if which in ("exposure", "all"):
        changed = replace(clean, train=replace(clean.train, images=change_exposure(clean.train.images)))
        runs += [("exposure: clean images", clean, config()), ("exposure: changed", changed, config()),
                 (f"exposure: changed, --{method}.appearance exposure", changed, config(appearance="exposure")),
                 (f"exposure: changed, --{method}.appearance embedding", changed, config(appearance="embedding"))]
    if which in ("poses", "all"):
        cameras = clean.train.cameras
        moved = replace(cameras, c2w=disturb_poses(cameras.c2w, 0.02 * float(clean.scene_scale)))
        disturbed = replace(clean, train=replace(clean.train, cameras=moved))
        runs += [("poses: clean", clean, config()), ("poses: disturbed", disturbed, config()),
                 (f"poses: disturbed, --{method}.pose-opt", disturbed, config(pose_opt=True))]
        if method == "splat":
            runs.append(("poses: disturbed, --splat.pose-opt with the earlier defaults (--splat.pose-opt-start 0 "
                         "--splat.lr-pose 1e-3)", disturbed, SplatConfig(pose_opt=True, pose_opt_start=0.0, lr_pose=1e-3)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="all", choices=("exposure", "poses", "multiscale", "real", "all"))
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="folder holding fern/ and fox/ (case real)")
    parser.add_argument("--scenes", default="fern,fox", help="real captures to train (case real): fern, fox, fern-sfm")
    parser.add_argument("--variants", default=",".join(REAL_VARIANTS),
                        help=f"runs on each real capture (case real): {', '.join(REAL_VARIANTS)}")
    parser.add_argument("--method", default="splat", choices=("splat", "nerf"),
                        help="the method of the exposure and poses cases")
    parser.add_argument("--refine-steps", type=int, default=100, help="steps of each test view's pose fit")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v and v not in REAL_VARIANTS]
    if unknown or any(s and s not in REAL_SCENES for s in args.scenes.split(",")):
        parser.error(f"--variants takes {', '.join(REAL_VARIANTS)}; --scenes takes {', '.join(REAL_SCENES)}")
    rows, scale_rows, real_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        if args.case in ("real", "all"):
            real_rows = real_captures(Path(tmp), Path(args.data), [s for s in args.scenes.split(",") if s],
                                      [v for v in args.variants.split(",") if v], args.steps, args.refine_steps)
        if args.case in ("multiscale", "all"):
            scale_rows = multiscale(Path(tmp), args.steps, args.resolution)
        clean = load_scene(generate_scene(Path(tmp) / "scene", resolution=args.resolution))
        truth = clean.train.cameras.c2w
        for index, (name, scene, options) in enumerate(cases(clean, args.case, args.method)):
            config = TrainConfig(method=args.method, steps=args.steps, out=str(Path(tmp) / f"run{index}"), save_every=0,
                                 progress=False)
            start = time.perf_counter()
            trainer = Trainer(config, options, scene=scene)
            metrics = trainer.run()
            seconds = time.perf_counter() - start
            refined = trainer.method.refined_train_cameras()
            final = (refined if refined is not None else scene.train.cameras).c2w.double()
            degrees, distances = pose_changes(final, truth.double())
            aligned_degrees, aligned_distances = pose_changes(align_poses(final, truth.double()), truth.double())
            model = trainer.method.model
            refined_test = evaluate_split(model, refine_split_poses(model, scene.test, float(scene.scene_scale),
                                                                    args.refine_steps))
            percent = 100 / float(clean.scene_scale)
            rows.append((name, metrics["psnr"], refined_test["psnr"], metrics["ssim"], float(degrees.mean()),
                         percent * float(distances.mean()), float(aligned_degrees.mean()),
                         percent * float(aligned_distances.mean()), seconds))
            print(rows[-1], flush=True)
    print("\n" + header() + "\n")
    if rows:
        print("Camera error: mean rotation and distance (in % of the scene scale) from the clean training poses, as "
              "the poses are and after the one rigid map that best aligns them (pose refinement may move the whole "
              "capture with the scene)\n")
        print("| run | test PSNR | refined test poses | test SSIM | camera error | aligned camera error | seconds |\n"
              "|---|---|---|---|---|---|---|")
    for name, psnr, refined_psnr, ssim, degrees, percent, aligned_degrees, aligned_percent, seconds in rows:
        print(f"| {name} | {psnr:.2f} dB | {refined_psnr:.2f} dB | {ssim:.3f} | {degrees:.3f}°, {percent:.2f}% "
              f"| {aligned_degrees:.3f}°, {aligned_percent:.2f}% | {seconds:.0f} |")
    if scale_rows:
        print(f"\nMulti-scale: trained at {args.resolution} px, test PSNR at each scale\n")
        print("| mode | " + " | ".join(scale_name(f) for f in SCALES) + " | seconds |")
        print("|---" * (len(SCALES) + 2) + "|")
        print("\n".join(scale_rows))
    if real_rows:
        print("\nReal captures: test PSNR at the given test poses, after fitting them (100 steps each), and with NeRF-W's "
              "appearance fit (eval --appearance-fit half: right halves only)\n")
        print("| scene | run | test PSNR | refined test poses | appearance fit | test SSIM | seconds |\n|---|---|---|---|---|---|---|")
        print("\n".join(real_rows))


if __name__ == "__main__":
    main()
