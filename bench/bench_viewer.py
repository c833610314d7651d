"""Live viewer numbers: render latency per resolution for a splat scene and a NeRF, and (with
chromium + Playwright) page load to first image, frames per second while orbiting, and
training time with an idle browser.

    python bench/bench_viewer.py [--ply FILE] [--nerf RUN] [--backend torch|cuda] [--no-browser] [--no-overhead] [--only-browser]

The splat scene is the reference 3DGS PLY in ../shared/data/splat_ply/. The NeRF is a run
folder or checkpoint; without one, a NeRF is trained on the procedural default scene
for ``--nerf-steps`` steps first. Latency is one frame through the viewer's path (render
under the device lock, colour conversion, JPEG encoding), median of 3; the NeRF's
``preview`` rows are the coarser renders of frames while the camera moves. On the CPU each
row is measured for both paths in turn (``old``: pure torch, ``RENDER3D_CPU_KERNELS=0``;
``new``: the numba kernels), and so is the orbit in the browser.
"""

from __future__ import annotations

from render3d.runtime import configure_process

configure_process()  # as the render3d command does, before torch loads (OpenMP wait policy, malloc)

import argparse
import os
import shutil
import statistics
import tempfile
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table_header, table_row  # noqa: E402

from render3d.viewer.camera import CameraPose  # noqa: E402
from render3d.viewer.device_share import DeviceShare  # noqa: E402
from render3d.viewer.render_loop import SceneRenderer, ViewSettings  # noqa: E402
from render3d.viewer.source import ViewerContent, from_trainer, load_content  # noqa: E402

SHARED_PLY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splat_ply" / "inria_3dgs_iter7000.ply"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]  # no --disable-gpu: it caps the headless page's redraw rate


def overview_pose(content: ViewerContent) -> CameraPose:
    """A camera outside the content's box looking at its centre."""
    from render3d.cameras import look_at

    lo, hi = content.bounds[0].float(), content.bounds[1].float()
    center, extent = (lo + hi) / 2, (hi - lo).norm()
    eye = center + extent * torch.tensor([0.0, -0.9, 0.5])
    c2w = look_at(eye, center, torch.tensor([0.0, 0.0, 1.0]))
    return CameraPose.from_c2w(c2w, fov=0.9, aspect=1.0)


def latency_table(content: ViewerContent, sides: list[int], moving: bool = False) -> list[tuple[int, float, float] | tuple[int, str]]:
    """(side, render ms, JPEG ms) per side, or (side, error) where the render fails; ``moving``: the
    renders of frames while the camera moves (a model's preview render)."""
    import io

    from PIL import Image

    renderer = SceneRenderer(content, DeviceShare(content.lock))
    pose = overview_pose(content)
    rows = []
    for side in sides:
        settings = ViewSettings(max_side=side)
        try:
            renderer.render(pose, side, settings, moving)  # warm-up
        except RuntimeError as exc:
            rows.append((side, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
            continue
        render_ms, jpeg_ms = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            frame = renderer.render(pose, side, settings, moving)
            t1 = time.perf_counter()
            Image.fromarray(frame.image).save(io.BytesIO(), format="JPEG", quality=settings.jpeg_quality)
            render_ms.append(1000 * (t1 - t0))
            jpeg_ms.append(1000 * (time.perf_counter() - t1))
        rows.append((side, statistics.median(render_ms), statistics.median(jpeg_ms)))
    return rows


def browser_numbers(content: ViewerContent, side: int, seconds: float) -> dict[str, float]:
    """Page load to first image, and frames sent while the mouse orbits for ``seconds``."""
    from playwright.sync_api import sync_playwright

    from render3d.viewer.server import Viewer

    viewer = Viewer(content, port=0, settings=ViewSettings(max_side=side), verbose=False)
    out: dict[str, float] = {}
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=shutil.which("chromium"), headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1024, "height": 700})
            page = ctx.new_page()
            start = time.monotonic()
            page.goto(viewer.url)
            while not viewer.clients or next(iter(viewer.clients.values())).frames_sent == 0:
                time.sleep(0.01)
            renderer = next(iter(viewer.clients.values()))
            out["page load to first frame sent (s)"] = time.monotonic() - start
            time.sleep(1.0)
            before, moving_before, full_before = renderer.frames_sent, renderer.moving_frames, renderer.moving_full_frames
            page.mouse.move(200, 350)
            page.mouse.down()
            t0 = time.monotonic()
            x = 200.0
            while time.monotonic() - t0 < seconds:
                x += 4.0
                page.mouse.move(200 + (x % 400), 350)
                time.sleep(1 / 60)
            page.mouse.up()
            elapsed = time.monotonic() - t0
            moving = renderer.moving_frames - moving_before
            out["orbit frames/s sent"] = (renderer.frames_sent - before) / elapsed
            out[f"orbit frames/s at the full {side} px"] = (renderer.moving_full_frames - full_before) / elapsed
            out["orbit: moving frames, of them at full size"] = float(moving)
            out["orbit frame side at the end (px)"] = float(renderer.last_side)
            ctx.close()
    finally:
        viewer.stop()
    return out


def chromium_cpu_seconds() -> float:
    """CPU seconds used so far by every running chromium process (Linux /proc)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if "chrom" in fields[0]:
                parts = fields[1].split()
                total += (int(parts[11]) + int(parts[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def training_overhead(steps: int, with_browser: bool, repeats: int) -> dict[str, float]:
    """Median wall seconds of ``trainer.run()`` for ``steps`` steps over ``repeats`` alternating rounds:
    no viewer, a viewer, a viewer with an idle browser page; plus the viewer's own render seconds
    and the browser's CPU seconds during the run."""
    from render3d.datasets import load_scene
    from render3d.datasets.synthetic import generate_scene
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer
    from render3d.viewer.server import Viewer

    tmp = Path(tempfile.mkdtemp())
    scene = load_scene(generate_scene(tmp / "scene", resolution=64, n_train=16, n_val=1, n_test=2))
    samples: dict[str, list[float]] = {}

    def run(name: str, viewer_on: bool, browser_on: bool) -> None:
        config = TrainConfig(steps=steps, out=str(tmp / name), save_every=0, progress=False, backend="torch")
        trainer = Trainer(config, SplatConfig(init_points=3000, sh_degree=1), scene=scene)
        viewer = ctx = pw = None
        if viewer_on:
            viewer = Viewer(from_trainer(trainer), port=0, settings=ViewSettings(max_side=256), verbose=False)
        if browser_on:
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            ctx = pw.chromium.launch_persistent_context(str(tmp / "profile"), executable_path=shutil.which("chromium"), headless=True,
                                                        args=CHROMIUM_ARGS + ["--disable-gpu"], viewport={"width": 800, "height": 600})
            ctx.new_page().goto(viewer.url)
            while not viewer.clients or next(iter(viewer.clients.values())).frames_sent == 0:
                time.sleep(0.05)
            time.sleep(1.0)  # let the page settle after its first frame
        browser_cpu = chromium_cpu_seconds()
        start = time.perf_counter()
        trainer.run()  # the same final evaluation (2 small test views) in every run
        samples.setdefault(name, []).append(time.perf_counter() - start)
        if ctx is not None:
            samples.setdefault("  browser CPU seconds meanwhile", []).append(chromium_cpu_seconds() - browser_cpu)
            ctx.close()
            pw.stop()
        if viewer is not None:
            samples.setdefault(f"  of which the viewer's renders ({name})", []).append(viewer.share.render_seconds)
            viewer.stop()

    run("warm-up", False, False)  # the first run in a process is slower (allocator, caches): not counted
    samples.clear()
    for _ in range(repeats):
        run("no viewer", False, False)
        run("viewer, no browser", True, False)
        if with_browser:
            run("viewer + idle browser (same 2 cores)", True, True)
    return {name: statistics.median(values) for name, values in samples.items()}


def train_nerf(steps: int, backend: str) -> str:
    """A NeRF run on the default scene (``steps`` steps), for the latency table."""
    from render3d.nerf.method import NerfConfig
    from render3d.train import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(method="nerf", steps=steps, out=tempfile.mkdtemp(prefix="bench-viewer-nerf-"), progress=False,
                                  backend=backend), NerfConfig())
    trainer.run()
    return str(trainer.run_dir)


PATHS = {"old": "0", "new": "1"}  # RENDER3D_CPU_KERNELS value of each path


def latency_rows(args: argparse.Namespace, content: ViewerContent, paths: list[str]) -> None:
    """Render latency of the splat scene and the NeRF (trained first unless ``--nerf``), each path, as a table."""
    from render3d.cpu_kernels import ENV_VAR

    nerf = load_content(args.nerf or train_nerf(args.nerf_steps, args.backend), args.backend)
    scenes = [(f"{Path(args.ply).name} ({content.model.num_gaussians} Gaussians)", content, False),  # type: ignore[attr-defined]
              (f"NeRF {nerf.name}", nerf, False), (f"NeRF {nerf.name}, preview (moving frames)", nerf, True)]
    print("\n" + table_header(["scene", "path", "side (px)", "render ms", "JPEG ms", "frames/s"]))
    for name, scene, moving in scenes:
        for side in (256, 512, 1024):
            for path in paths:
                os.environ[ENV_VAR] = PATHS[path]
                for row in latency_table(scene, [side], moving):
                    if len(row) == 2:
                        print(table_row([name, path, row[0], f"failed: {row[1]}", "", ""]), flush=True)
                    else:
                        _, render_ms, jpeg_ms = row
                        print(table_row([name, path, side, f"{render_ms:.0f}", f"{jpeg_ms:.1f}",
                                         f"{1000 / (render_ms + jpeg_ms):.2f}"]), flush=True)


def latency_and_browser(args: argparse.Namespace, browser: bool) -> None:
    """Render latency rows (unless ``--only-browser``); page load and orbit numbers in chromium (each path)."""
    from render3d.cpu_kernels import ENV_VAR

    content = load_content(args.ply, args.backend)
    paths = ["new"] if args.backend == "cuda" else ["old", "new"]
    print(header(f"Backend: {args.backend}"))
    if not args.only_browser:
        latency_rows(args, content, paths)
    if browser:
        for path in paths:
            os.environ[ENV_VAR] = PATHS[path]
            print("\n" + table_header([f"browser (chromium, SwiftShader), {Path(args.ply).name}, max side "
                                        f"{args.browser_side} px, {path} path", "value"]))
            for key, value in browser_numbers(content, args.browser_side, args.orbit_seconds).items():
                print(table_row([key, f"{value:.2f}"]), flush=True)
    os.environ[ENV_VAR] = PATHS["new"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ply", default=str(SHARED_PLY), help="Gaussian PLY to view (default: the shared reference one)")
    parser.add_argument("--nerf", default=None, help="NeRF run folder or checkpoint (default: train one on the default scene)")
    parser.add_argument("--nerf-steps", type=int, default=600, help="steps of that NeRF when it is trained here")
    parser.add_argument("--backend", default="torch", help="torch (CPU) or cuda")
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium measurements")
    parser.add_argument("--only-overhead", action="store_true", help="measure only the training overhead")
    parser.add_argument("--only-browser", action="store_true", help="measure only the orbit in chromium (the splat scene, both paths)")
    parser.add_argument("--orbit-seconds", type=float, default=5.0)
    parser.add_argument("--browser-side", type=int, default=512, help="max resolution in the browser measurements")
    parser.add_argument("--no-overhead", action="store_true", help="skip the training-overhead measurement")
    parser.add_argument("--overhead-steps", type=int, default=300)
    parser.add_argument("--overhead-repeats", type=int, default=3, help="alternating rounds of the overhead runs (medians)")
    args = parser.parse_args()
    browser = not args.no_browser and shutil.which("chromium") is not None

    if not args.only_overhead:
        latency_and_browser(args, browser)
    if args.no_overhead or args.only_browser:
        return
    times = training_overhead(args.overhead_steps, browser, args.overhead_repeats)
    base = times["no viewer"]
    print("\n" + table_header([f"training {args.overhead_steps} steps (64 px scene), median of {args.overhead_repeats}", "seconds",
                               "vs no viewer"]))
    for name, seconds in times.items():
        share = f"{100 * seconds / base:.1f}% of the no-viewer time" if name.startswith(" ") else f"{100 * (seconds / base - 1):+.1f}%"
        print(table_row([name, f"{seconds:.2f}", share]))


if __name__ == "__main__":
    main()
