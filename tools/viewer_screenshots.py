"""Screenshots of the viewer's opening view in chromium, to look at by eye.

    python tools/viewer_screenshots.py NAME=RUN_OR_PLY ... [NAME=data:DATASET[:DOWNSCALE] ...] [--out DIR]

Each ``NAME=...`` opens the viewer on a run folder, checkpoint or Gaussian PLY, or, with
``data:``, on a dataset with a splat model just initialised from it (no training: enough to
judge the framing, the frustums and the sparse points). The page is shot once the frame
rendered for the opening view has arrived: ``DIR/NAME.png`` (default
``test-artifacts/viewer-opening/``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_viewer import CHROMIUM_ARGS  # noqa: E402
from render3d.viewer.render_loop import ViewSettings  # noqa: E402
from render3d.viewer.server import Viewer  # noqa: E402
from render3d.viewer.source import ViewerContent, load_content  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "test-artifacts" / "viewer-opening"


def initialized_content(spec: str) -> ViewerContent:
    """``DATASET[:DOWNSCALE]``: the dataset with a splat model initialised from it."""
    from render3d.datasets import load_scene
    from render3d.splat.method import SplatConfig, SplatMethod

    path, _, downscale = spec.partition(":")
    scene = load_scene(path, downscale=int(downscale or 1))
    model = SplatMethod.create(SplatConfig(), scene, "torch", torch.device("cpu"), 1000, 0).model
    return ViewerContent(name=f"{Path(path).name} (initial splats)", run_dir=Path(tempfile.mkdtemp()), bounds=scene.bounds,
                         static_model=model, train_cameras=scene.train.cameras, train_images=scene.train.images,
                         points=scene.points, point_colors=scene.point_colors)


def shoot(page, content: ViewerContent, path: Path, side: int, timeout: float) -> tuple[float, ...]:
    """Open ``content`` in ``page``; once its second frame arrived (the first may precede the page's
    first camera report), write the screenshot. Returns the page's camera position."""
    viewer = Viewer(content, port=0, settings=ViewSettings(max_side=side), verbose=False)
    try:
        page.goto(viewer.url)
        start = time.monotonic()
        while time.monotonic() - start < timeout and (not viewer.clients or next(iter(viewer.clients.values())).frames_sent < 2):
            time.sleep(0.2)
        time.sleep(2.0)  # the browser draws the last frame
        page.screenshot(path=str(path))
        return tuple(float(v) for v in next(iter(viewer.server.get_clients().values())).camera.position)
    finally:
        viewer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("views", nargs="+", metavar="NAME=SOURCE")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--side", type=int, default=512, help="max resolution of the frames")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the frames")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=shutil.which("chromium"), headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1024, "height": 700})
        for view in args.views:
            name, _, source = view.partition("=")
            content = initialized_content(source[5:]) if source.startswith("data:") else load_content(source, "torch")
            page = browser.new_page()
            position = shoot(page, content, out / f"{name}.png", args.side, args.timeout)
            page.close()
            print(f"{out / name}.png: camera at {[round(v, 2) for v in position]}", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
