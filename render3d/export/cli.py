"""The ``render3d render`` and ``render3d export`` commands.

Both load through :func:`render3d.runs.load_run` (run folder, checkpoint, ``.ply`` or
``.splat``) and ask the model for capabilities (:mod:`render3d.protocol`), never for its class.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from render3d.cameras import Cameras
from render3d.errors import Render3DError
from render3d.limits import check_image_size, check_mesh_resolution, check_timing
from render3d.protocol import HasGaussians, Meshable
from render3d.runs import LoadedRun, load_run

PATH_KINDS = ("auto", "orbit", "spiral", "interpolate", "dataset")
EXPORT_FORMATS = ("ply", "splat", "pointcloud", "mesh")
DEFAULT_SIZE = 512  # longer side of renders of content without cameras


def parse_resolution(text: Optional[str], base: Optional[Cameras]) -> Optional[tuple[int, int]]:
    """``"512"`` (width; height keeps the dataset's aspect, square without one) or ``"640x480"``; None keeps the default."""
    if text is None:
        return None
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = int(text)
            h = int(round(w * base.height / base.width)) if base is not None else w
    except (ValueError, OverflowError):
        raise Render3DError(f"--resolution {text!r} is not WIDTH or WIDTHxHEIGHT (e.g. 512 or 640x480)") from None
    return check_image_size(w, h)


# --------------------------------------------------------------------------- render


@dataclass
class PlannedRender:
    """The cameras of a render and the path file's extras."""

    cameras: Cameras
    fps: float
    crop: Optional[Any] = None
    background: Optional[torch.Tensor] = None
    exact_views: bool = False  # frames are the dataset's own views (ground truth exists)


def plan_render(args: argparse.Namespace, run: LoadedRun) -> PlannedRender:
    """Turn ``--path`` and the timing / size options into cameras."""
    from render3d.camera_paths.framing import frame_from_bounds, keyframes_from_cameras, orbit_poses, scene_frame, spiral_poses
    from render3d.camera_paths.interpolation import cameras_from_poses, interpolate_keyframes
    from render3d.camera_paths.path_file import load_path
    from render3d.crop import CropBox

    for name in ("fps", "seconds"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise Render3DError(f"--{name} must be a positive number, got {value}")
    scene = run.scene
    base = scene.train.cameras if scene is not None else None
    size = parse_resolution(args.resolution, base)
    kind = args.path
    if kind == "auto":
        kind = "spiral" if scene is not None and scene.forward_facing else "orbit"
    if kind not in PATH_KINDS:
        cam_path = load_path(kind)
        cam_path.fps = args.fps or cam_path.fps
        cam_path.seconds = args.seconds or cam_path.seconds
        check_timing(cam_path.fps, cam_path.seconds, f"--path {kind}")
        w, h = check_image_size(*(size or cam_path.resolution or ((base.width, base.height) if base is not None else (DEFAULT_SIZE, DEFAULT_SIZE))))
        bg = torch.tensor(cam_path.background, dtype=torch.float32) if cam_path.background is not None else None
        crop = CropBox(*cam_path.crop) if cam_path.crop is not None else None
        return PlannedRender(cam_path.cameras(w, h), cam_path.fps, crop, bg)
    fps = args.fps or 30.0
    w, h = size or ((base.width, base.height) if base is not None else (DEFAULT_SIZE, DEFAULT_SIZE))
    if kind == "dataset":
        split = run.require_scene("--path dataset").split(args.split)
        if len(split) == 0:
            raise Render3DError(f"the {args.split} split of {scene.root} is empty: choose another with --split")
        return PlannedRender(split.cameras.resized(w, h), fps, exact_views=(w, h) == (split.cameras.width, split.cameras.height))
    n_frames = check_timing(fps, args.seconds or 4.0)
    if kind == "orbit":
        frame = scene_frame(base, run.bounds) if base is not None else frame_from_bounds(run.bounds, args.up)
        c2w = orbit_poses(frame, n_frames)
        fov = torch.full((n_frames,), frame.fov_deg, dtype=torch.float64)
    elif kind == "spiral":
        c2w = spiral_poses(run.require_scene("--path spiral").train.cameras, scene.near_far, n_frames)
        fov = torch.full((n_frames,), scene_frame(base, run.bounds).fov_deg, dtype=torch.float64)
    else:  # interpolate: a smooth loop through a few training cameras
        keys = keyframes_from_cameras(run.require_scene("--path interpolate").train.cameras, args.keyframes)
        c2w, fov = interpolate_keyframes(keys, n_frames, smoothness=1.0, loop=True)
    return PlannedRender(cameras_from_poses(c2w, fov, w, h), fps)


def _sinks(out: Path, modes: Sequence[str], separate: bool, frames: bool, fps: float) -> dict[str, Any]:
    from render3d.export.video import PngFolder, VideoWriter

    def sink(target: Path) -> Any:
        return PngFolder(target) if frames else VideoWriter(target, fps)

    if not separate:
        return {"all": sink(out)}
    if frames:
        return {m: sink(out / m) for m in modes}
    return {m: sink(out.with_name(f"{out.stem}_{m}{out.suffix}")) for m in modes}


def cmd_render(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from render3d.crop import cropped
    from render3d.export.render import parse_modes, render_frames
    from render3d.export.video import PngFolder

    modes = parse_modes(args.modes)
    run = load_run(args.run, args.backend)
    plan = plan_render(args, run)
    model = cropped(run.model, plan.crop)
    label = Path(args.path).stem if args.path not in PATH_KINDS else args.path
    out = Path(args.out) if args.out else run.run_dir / "renders" / (label if args.frames else f"{label}.mp4")
    if not args.frames and out.suffix.lower() != ".mp4":
        raise Render3DError(f"--out {out} must end in .mp4 (or add --frames to write a folder of PNGs)")
    targets, error_sink = None, None
    if args.error_maps:
        if not plan.exact_views:
            raise Render3DError("--error-maps needs ground truth: use --path dataset at the dataset's resolution")
        targets = run.scene.split(args.split).image_float
        error_sink = PngFolder(out.parent / f"{out.stem}_errors", prefix="error_")
    sinks = _sinks(out, modes, args.separate, args.frames, plan.fps)
    everything = [*sinks.values(), *([error_sink] if error_sink is not None else [])]
    started = time.perf_counter()
    try:
        n = render_frames(model, plan.cameras, sinks, modes, side_by_side=not args.separate, background=plan.background,
                          targets=targets, error_sink=error_sink, progress=not args.no_progress)
    except BaseException:
        for s in everything:
            s.abort()
        raise
    for s in everything:
        s.close()
    seconds = time.perf_counter() - started
    cams = plan.cameras
    where = ", ".join(str(s.target) for s in sinks.values())
    print(f"rendered {n} frames at {cams.width}x{cams.height} ({', '.join(modes)}) in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} frames/s) -> {where}")
    if error_sink is not None:
        print(f"error maps -> {error_sink.target}")
    return 0


def add_render_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``render3d render``."""
    p = sub.add_parser("render", help="render a video or frames of a trained run or Gaussian file along a camera path",
                       description="Render a run folder, checkpoint, 3DGS .ply or .splat along a camera path into an H.264 MP4 "
                                   "(or PNG frames with --frames). Outputs appear only when complete.")
    p.add_argument("run", help="run folder, checkpoint file, 3DGS .ply or .splat")
    p.add_argument(
        "--path",
        default="auto",
        help="orbit (around the scene centre), spiral (forward-facing scenes), interpolate (smooth loop through "
        "training views), dataset (the --split views in order) or a camera-path .json; auto: spiral for forward-facing scenes, else orbit",
    )
    p.add_argument(
        "--out", default=None, help="output .mp4 (or folder with --frames); default RUN/renders/<path>.mp4 (runs/<file stem>/renders/ for a .ply or .splat)"
    )
    p.add_argument("--frames", action="store_true", help="write PNG frames into a folder instead of a video")
    p.add_argument("--modes", default="rgb", help="comma-separated: rgb, depth, alpha (default: rgb)")
    p.add_argument("--separate", action="store_true", help="one file (or folder) per mode instead of side by side")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: 30, or the path file's)")
    p.add_argument("--seconds", type=float, default=None, help="video length (default: 4, or the path file's); ignored by --path dataset")
    p.add_argument(
        "--resolution",
        default=None,
        help=f"WIDTH (height keeps the aspect) or WIDTHxHEIGHT (default: the dataset's, or the path file's, or {DEFAULT_SIZE} without cameras)",
    )
    p.add_argument(
        "--up",
        default="-y",
        help="world up axis of an orbit around content without cameras (.ply / .splat): x, y, z, -x, -y or -z (default: -y, the COLMAP world)",
    )
    p.add_argument("--split", default="train", choices=("train", "val", "test"), help="views of --path dataset (default: train)")
    p.add_argument("--keyframes", type=int, default=6, help="training views used as keyframes by --path interpolate (default: 6)")
    p.add_argument("--error-maps", action="store_true", help="with --path dataset: also write |render - ground truth| heat maps to <out>_errors/")
    p.add_argument("--backend", default="auto", help="auto, cuda or torch (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)
    return p


# --------------------------------------------------------------------------- export


def _gaussians(run: LoadedRun, what: str) -> HasGaussians:
    if not isinstance(run.model, HasGaussians):
        raise Render3DError(f"--format {what} needs Gaussians but the run is a {run.method} model: use --format pointcloud or mesh")
    return run.model


def mesh_cameras(run: LoadedRun, views: int) -> Cameras:
    """The views fused into a TSDF mesh: the training cameras, or a ring of orbits around content without cameras."""
    from render3d.camera_paths.framing import views_around

    if run.scene is not None:
        cameras = run.scene.train.cameras
        if views and views < len(cameras):
            cameras = cameras[torch.linspace(0, len(cameras) - 1, views).round().long()]
        return cameras
    return views_around(run.bounds, views or 48)


def cmd_export(args: argparse.Namespace, argv: Sequence[str]) -> int:
    run = load_run(args.run, args.backend)
    default_names = {"ply": "splats.ply", "splat": "splats.splat", "pointcloud": "pointcloud.ply", "mesh": "mesh.ply"}
    out = Path(args.out) if args.out else run.run_dir / "export" / default_names[args.format]
    started = time.perf_counter()
    if args.format == "ply":
        from render3d.splat.ply import save_ply

        model = _gaussians(run, "ply")
        save_ply(model, out, cameras=mesh_cameras(run, 0))
        detail = f"{model.num_gaussians} Gaussians"
    elif args.format == "splat":
        from render3d.splat.ply import save_splat

        model = _gaussians(run, "splat")
        save_splat(model, out, cameras=mesh_cameras(run, 0))
        detail = f"{model.num_gaussians} Gaussians"
    elif args.format == "pointcloud":
        from render3d.export.pointcloud import gaussian_points, save_point_cloud, surface_points

        from_gaussians = args.points == "gaussians" or (args.points == "auto" and isinstance(run.model, HasGaussians))
        if from_gaussians:
            points, colors = gaussian_points(_gaussians(run, "pointcloud --points gaussians"), args.min_opacity)
        else:
            points, colors = surface_points(run.model, mesh_cameras(run, 0))
        save_point_cloud(points, colors, out)
        detail = f"{len(points)} points"
    else:
        from render3d.export.mesh import MESH_FORMATS, MeshConfig, mesh_from_model, save_mesh

        if out.suffix.lower() not in MESH_FORMATS:
            raise Render3DError(f"--out {out}: a mesh is written as .ply, .obj or .glb")
        check_mesh_resolution(args.mesh_resolution)
        if isinstance(run.model, Meshable):  # the model's own route (NeRF: density -> marching cubes)
            mesh = run.model.extract_mesh(resolution=args.mesh_resolution)
            source = "the model's density field"
        else:
            cameras = mesh_cameras(run, args.mesh_views)
            mesh = mesh_from_model(run.model, cameras, run.bounds, MeshConfig(resolution=args.mesh_resolution), progress=not args.no_progress)
            source = f"TSDF fusion of {len(cameras)} views"
        save_mesh(mesh, out)
        detail = f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces from {source}"
    print(f"exported {args.format} ({detail}) in {time.perf_counter() - started:.1f} s -> {out}")
    return 0


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``render3d export``."""
    p = sub.add_parser(
        "export",
        help="export a trained run or Gaussian file as PLY, .splat, point cloud or mesh",
        description="Export a run folder, checkpoint, 3DGS .ply or .splat: Gaussians as reference-3DGS PLY or web .splat, "
        "a coloured point cloud, or a mesh (.ply/.obj/.glb). Outputs appear only when complete.",
    )
    p.add_argument("run", help="run folder, checkpoint file, 3DGS .ply or .splat")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="ply (3DGS layout), splat (32-byte web format), pointcloud, mesh")
    p.add_argument("--out", default=None, help="output file; default RUN/export/<splats.ply|splats.splat|pointcloud.ply|mesh.ply>")
    p.add_argument(
        "--points",
        default="auto",
        choices=("auto", "gaussians", "depth"),
        help="pointcloud source: Gaussian centres or surface points from rendered depth (auto: Gaussians when the model has them)",
    )
    p.add_argument("--min-opacity", type=float, default=0.1, help="pointcloud from Gaussians: skip fainter ones (default: 0.1)")
    p.add_argument("--mesh-resolution", type=int, default=128, help="mesh: voxels along the longest side of the scene bounds, 8-1024 (default: 128)")
    p.add_argument("--mesh-views", type=int, default=0, help="mesh: training views fused (default 0: all)")
    p.add_argument("--backend", default="auto", help="auto, cuda or torch (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)
    return p
