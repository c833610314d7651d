"""Making clip datasets (``render3d video data``): rendered along random camera paths, or cut from a video.

Sources:

* ``default``: the bundled default scene, ray-traced exactly by its own generator
  (:class:`~render3d.video.raytraced.RayTracedScene`): ground-truth frames, no 3D model needed;
* a run folder, checkpoint, ``.ply`` or ``.splat`` (:func:`render3d.runs.load_run`): frames
  are the trained model's renders;
* a video file (``.avi``, ``.mp4``, ...): consecutive frames, centre-cropped to a square, no poses.

Rendered clips follow random smooth paths (:func:`render3d.video.motion.random_path`); the
held-out clips come from their own random stream, so no held-out path is a training path.
Video clips are held out by time: the last ``test_fraction`` of the video.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from render3d.camera_paths.framing import SceneFrame
from render3d.camera_paths.interpolation import cameras_from_poses
from render3d.errors import Render3DError
from render3d.protocol import SceneModel
from render3d.video.clips import ClipSet, ClipSplit
from render3d.video.motion import PathStyle, random_path
from render3d.video.wavelet import check_frames

VIDEO_SUFFIXES = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif"}
SCENE_FPS = 8.0
MAX_CLIP_PIXELS = 2 * 1024**3  # bytes of uint8 frames a clip set may hold


@dataclass
class ClipRequest:
    """What ``render3d video data`` was asked for."""

    clips: int = 200
    test_clips: int = 0  # 0: max(2, clips // 8)
    frames: int = 17
    size: int = 64
    seed: int = 0
    frame_step: int = 1  # video files: take every n-th frame
    test_fraction: float = 0.2  # video files: the last fraction of the video is held out
    progress: bool = True

    def n_test(self) -> int:
        return self.test_clips or max(2, self.clips // 8)

    def validate(self) -> None:
        check_frames(self.frames)
        if self.clips < 1 or self.test_clips < 0 or self.frame_step < 1:
            raise Render3DError("--clips and --frame-step must be at least 1, --test-clips at least 0")
        if self.size < 8 or self.size % 8 or self.size > 1024:
            raise Render3DError(f"--size {self.size}: use a multiple of 8 from 8 to 1024 (the tokenizer downsamples by 8)")
        if not 0 < self.test_fraction < 1:
            raise Render3DError(f"--test-fraction {self.test_fraction} must be between 0 and 1")
        total = (self.clips + self.n_test()) * self.frames * self.size * self.size * 3
        if total > MAX_CLIP_PIXELS:
            raise Render3DError(f"{self.clips + self.n_test()} clips of {self.frames} frames at {self.size}px need "
                                f"{total / 2**30:.1f} GiB: ask for fewer --clips, --frames or a smaller --size")


# ----- rendered clips --------------------------------------------------------------------------
def _render_split(model: SceneModel, frame: SceneFrame, style: PathStyle, n: int, req: ClipRequest,
                  rng: np.random.Generator, desc: str) -> ClipSplit:
    frames, c2ws, Ks = [], [], []
    for _ in tqdm(range(n), desc=desc, unit="clip", disable=not req.progress, dynamic_ncols=True):
        c2w, fov = random_path(frame, req.frames, rng, style)
        cams = cameras_from_poses(c2w, fov, req.size, req.size)
        rgb = torch.cat([model.render(cams[i]).rgb.detach().cpu() for i in range(len(cams))])
        frames.append((rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8))
        c2ws.append(cams.c2w.float())
        Ks.append(cams.K.float())
    return ClipSplit(torch.stack(frames), torch.stack(c2ws), torch.stack(Ks))


def _frame_meta(frame: SceneFrame) -> dict[str, Any]:
    return {"center": frame.center.tolist(), "up": frame.up.tolist(), "radius": frame.radius,
            "elevation_deg": frame.elevation_deg, "fov_deg": frame.fov_deg}


def scene_frame_from_meta(meta: dict[str, Any]) -> SceneFrame:
    """The :class:`SceneFrame` stored in a clip set's (or model's) metadata."""
    f = meta["scene_frame"]
    return SceneFrame(torch.tensor(f["center"], dtype=torch.float64), torch.tensor(f["up"], dtype=torch.float64),
                      float(f["radius"]), float(f["elevation_deg"]), float(f["fov_deg"]))


def rendered_clips(model: SceneModel, frame: SceneFrame, style: PathStyle, req: ClipRequest, source: str, note: str) -> ClipSet:
    """Clips of ``model`` along random paths around ``frame``; train and test paths from separate random streams."""
    train = _render_split(model, frame, style, req.clips, req, np.random.default_rng([req.seed, 0]), "train clips")
    test = _render_split(model, frame, style, req.n_test(), req, np.random.default_rng([req.seed, 1]), "test clips")
    meta = {"source": source, "kind": "scene", "fps": SCENE_FPS, "seed": req.seed, "path_style": asdict(style),
            "scene_frame": _frame_meta(frame), "pose_scale": frame.radius,
            "split": "test clips follow their own random paths (a separate random stream); never trained on",
            "note": note}
    return ClipSet(train, test, meta)


def default_scene_clips(req: ClipRequest) -> ClipSet:
    from render3d.video.raytraced import RayTracedScene

    frame = RayTracedScene.scene_frame()
    style = PathStyle(elevation_deg=RayTracedScene.elevation_range())
    note = ("the bundled default scene ray-traced by its own generator (exact frames, 5 samples per pixel, white "
            "background); random smooth paths around it")
    return rendered_clips(RayTracedScene(), frame, style, req, "default", note)


def run_clips(source: str, req: ClipRequest) -> ClipSet:
    from render3d.camera_paths.framing import frame_from_bounds, scene_frame
    from render3d.runs import load_run

    run = load_run(source, dataset="optional")
    frame = scene_frame(run.scene.train.cameras, run.bounds) if run.scene is not None else frame_from_bounds(run.bounds)
    el = frame.elevation_deg
    style = PathStyle(elevation_deg=(max(-80.0, el - 20.0), min(80.0, el + 20.0)))
    note = f"renders of {run.name} ({run.method}) along random smooth paths around its training cameras' focus"
    return rendered_clips(run.model, frame, style, req, str(source), note)


# ----- video files -------------------------------------------------------------------------------
def _read_video(path: Path, size: int, step: int, progress: bool) -> tuple[torch.Tensor, float]:
    """Every ``step``-th frame, centre-cropped and resized to ``size`` (uint8 ``[N, size, size, 3]``), and the fps."""
    import imageio.v3 as iio

    from render3d.zoo.data import resize

    try:
        meta = iio.immeta(path)
        frames = []
        for i, frame in enumerate(tqdm(iio.imiter(path), desc="read video", unit="frame", disable=not progress, dynamic_ncols=True)):
            if i % step == 0:
                rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).permute(2, 0, 1)[None]
                frames.append(resize(rgb, size)[0].permute(1, 2, 0))
    except (OSError, ValueError, RuntimeError) as exc:
        raise Render3DError(f"cannot read video {path} ({type(exc).__name__}: {exc}); is it a video file ffmpeg can read?") from None
    if not frames:
        raise Render3DError(f"{path} holds no frames")
    fps = float(meta.get("fps") or 25.0)
    return torch.stack(frames), fps / step


def _starts(lo: int, hi: int, n: int) -> list[int]:
    """``n`` clip start frames spread evenly over ``lo .. hi`` (inclusive)."""
    return np.linspace(lo, hi, n).round().astype(int).tolist() if n > 1 else [lo]


def video_clips(path: Path, req: ClipRequest) -> ClipSet:
    """Clips of consecutive frames of a video; the last ``test_fraction`` of it is the held-out time range."""
    frames, fps = _read_video(path, req.size, req.frame_step, req.progress)
    n = len(frames)
    split = int(math.floor(n * (1 - req.test_fraction)))
    span = req.frames
    if split < span or n - split < span:
        raise Render3DError(f"{path}: {n} frames (every {req.frame_step}) split at frame {split} leave too few frames for "
                            f"{span}-frame clips on both sides: use fewer --frames, a smaller --frame-step or another --test-fraction")
    train = torch.stack([frames[s:s + span] for s in _starts(0, split - span, req.clips)])
    test = torch.stack([frames[s:s + span] for s in _starts(split, n - span, req.n_test())])
    meta = {"source": str(path), "kind": "video", "fps": fps, "seed": req.seed, "frame_step": req.frame_step,
            "video_frames": n, "test_from_frame": split * req.frame_step,
            "split": f"train clips lie in frames 0-{split * req.frame_step - 1}, test clips after; never trained on",
            "note": f"{path.name}: every {req.frame_step} frame(s), centre-cropped to a square and resized to {req.size}px; no camera poses"}
    return ClipSet(ClipSplit(train), ClipSplit(test), meta)


def make_clips(source: str, req: ClipRequest) -> ClipSet:
    """Clips from ``default``, a run / checkpoint / splat file, or a video file (see the module docstring)."""
    req.validate()
    if source == "default":
        return default_scene_clips(req)
    p = Path(source).expanduser()
    if p.suffix.lower() in VIDEO_SUFFIXES:
        if not p.is_file():
            raise Render3DError(f"no video file at {p}")
        return video_clips(p, req)
    if not p.exists():
        raise Render3DError(f"{source} is neither 'default', a video file, nor a run folder / checkpoint / .ply / .splat")
    return run_clips(source, req)

