"""``render3d view RUN_OR_CKPT_OR_PLY`` and the ``render3d train --viewer`` hook."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from render3d.errors import Render3DError


def add_view_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``view`` subcommand to the ``render3d`` sub-parsers ``sub``."""
    view = sub.add_parser(
        "view", help="open a trained run, checkpoint, Gaussian PLY or a dataset's cameras and points in the web viewer",
        description="Serve a trained run folder, a checkpoint .pt file, a Gaussian PLY (reference 3DGS layout) or a "
                    "dataset folder before training (its cameras and sparse points, e.g. from `render3d data process`) "
                    "to a browser with viser, without training. Ctrl-C stops.",
    )
    view.add_argument("path", metavar="RUN_OR_CKPT_OR_PLY", help="run folder, checkpoint file, .ply file or dataset folder")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface (default: 127.0.0.1)")
    view.add_argument("--port", type=int, default=8080, help="port; a free one is used when it is taken (default: 8080)")
    view.add_argument("--backend", default="auto", help="auto, cuda or torch (default: auto)")
    view.add_argument("--max-resolution", type=int, default=None, help="longer image side at rest, in pixels (default: 512)")
    view.add_argument("--jpeg-quality", type=int, default=None, help="JPEG quality 1-100 (default: 80)")
    view.add_argument("--video-model", default=None, help="a video world-model run (render3d video train): adds a panel that "
                      "generates a clip from the current view along the path editor's path, beside the 3D render")
    view.set_defaults(func=cmd_view)
    return view


def cmd_view(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Load the content and serve it until Ctrl-C."""
    from render3d.viewer.render_loop import ViewSettings
    from render3d.viewer.server import start_viewer
    from render3d.viewer.source import load_content

    if args.max_resolution is not None and not 16 <= args.max_resolution <= 8192:
        raise Render3DError(f"--max-resolution {args.max_resolution} is out of range: use 16-8192 pixels")
    if args.jpeg_quality is not None and not 1 <= args.jpeg_quality <= 100:
        raise Render3DError(f"--jpeg-quality {args.jpeg_quality} is out of range: use 1-100")
    video_model = None
    if args.video_model:
        from render3d.video.generate import load_video_model

        video_model = load_video_model(args.video_model)
    content = load_content(args.path, args.backend)
    given = {"max_side": args.max_resolution, "jpeg_quality": args.jpeg_quality}
    settings = ViewSettings(**{k: v for k, v in given.items() if v is not None})
    viewer = start_viewer(content, args.host, args.port, settings=settings)
    if video_model is not None:
        from render3d.viewer.video_panel import VideoPanel

        viewer.video_panel = VideoPanel(viewer, video_model)
    print("press Ctrl-C to stop", flush=True)
    viewer.wait()
    return 0


def attach_training_viewer(trainer: Any, host: str, port: int) -> Any:
    """Start a viewer watching ``trainer`` (``render3d train --viewer``); returns it."""
    from render3d.viewer.server import start_viewer
    from render3d.viewer.source import from_trainer

    return start_viewer(from_trainer(trainer), host, port)
