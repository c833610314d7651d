"""What a generation starts from: the first frame and the camera path (``render3d video generate``, the viewer).

The first frame is an image file, ``default`` (the bundled scene, ray-traced), or a trained
run (rendered by its 3D model). The path is ``orbit`` (an arc around the scene's centre at
``degrees_per_frame``) or a camera-path JSON file (:mod:`render3d.camera_paths.path_file`), resampled
to the asked frame count. With an image there is no 3D scene: the path is read relative to
its first camera, and ``orbit`` uses the training clips' scene frame (distance, elevation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from render3d.camera_paths.framing import SceneFrame
from render3d.camera_paths.interpolation import cameras_from_poses, interpolate_keyframes
from render3d.camera_paths.path_file import load_path
from render3d.errors import Render3DError
from render3d.protocol import SceneModel
from render3d.video.motion import orbit_arc

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_DEGREES_PER_FRAME = 4.0  # the middle of the training paths' 30-90 degrees over 16 frames


@dataclass
class Conditioning:
    """A first frame ``[3, H, W]`` in ``[0, 1]``, cameras ``K [T, 3, 3]`` / ``c2w [T, 4, 4]``, and the 3D scene if any."""

    first: Tensor
    K: Tensor
    c2w: Tensor
    scene: Optional[SceneModel] = None
    description: str = ""


@dataclass
class FirstFrameSource:
    """Where first frames come from: an image (no scene), or a renderable scene with its frame."""

    image: Optional[Tensor] = None
    scene: Optional[SceneModel] = None
    frame: Optional[SceneFrame] = None
    name: str = ""


def load_image(path: Path, size: tuple[int, int]) -> Tensor:
    """An image file as ``[3, H, W]`` floats, centre-cropped to the aspect of ``size`` (width, height) and resized."""
    import torch.nn.functional as F
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise Render3DError(f"cannot read image {path} ({type(exc).__name__}); pass a PNG or JPEG") from None
    w, h = size
    _c, ih, iw = rgb.shape
    scale = min(ih / h, iw / w)
    ch, cw = int(round(h * scale)), int(round(w * scale))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    crop = rgb[:, top:top + ch, left:left + cw]
    return F.interpolate(crop[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def first_frame_source(spec: str, size: tuple[int, int], model_frame: Optional[SceneFrame]) -> FirstFrameSource:
    """``default``, an image file, or a run folder / checkpoint / splat file."""
    if spec == "default":
        from render3d.video.raytraced import RayTracedScene

        return FirstFrameSource(scene=RayTracedScene(), frame=RayTracedScene.scene_frame(), name="the default scene (ray-traced)")
    p = Path(spec).expanduser()
    if p.suffix.lower() in IMAGE_SUFFIXES:
        if not p.is_file():
            raise Render3DError(f"no image at {p}")
        return FirstFrameSource(image=load_image(p, size), frame=model_frame, name=p.name)
    from render3d.camera_paths.framing import frame_from_bounds, scene_frame
    from render3d.runs import load_run

    run = load_run(p, dataset="optional")
    frame = scene_frame(run.scene.train.cameras, run.bounds) if run.scene is not None else frame_from_bounds(run.bounds)
    return FirstFrameSource(scene=run.model, frame=frame, name=run.name)


def path_poses(path: str, frames: int, frame: Optional[SceneFrame], degrees_per_frame: float) -> tuple[Tensor, Tensor]:
    """Camera-to-world ``[T, 4, 4]`` and vertical FOV (degrees) ``[T]`` of ``orbit`` or a path file."""
    if path == "orbit":
        if frame is None:
            raise Render3DError("--path orbit needs to know the scene: this model's clips had no scene frame; pass a path .json")
        return orbit_arc(frame, frames, degrees_per_frame), torch.full((frames,), frame.fov_deg, dtype=torch.float64)
    cam_path = load_path(path)
    return interpolate_keyframes(cam_path.keyframes, frames, cam_path.smoothness, cam_path.loop)


def render_views(scene: SceneModel, K: Tensor, c2w: Tensor, size: tuple[int, int]) -> Tensor:
    """The scene's own renders ``[T, 3, H, W]`` from each camera."""
    from render3d.cameras import Cameras

    cams = Cameras(K.float(), c2w.float(), size[0], size[1])
    with torch.no_grad():
        return torch.cat([scene.render(cams[i]).rgb.detach().float().cpu() for i in range(len(cams))]).permute(0, 3, 1, 2).clamp(0, 1)


def plan(first_frame: str, path: str, frames: int, size: tuple[int, int], model_frame: Optional[SceneFrame],
         degrees_per_frame: float = DEFAULT_DEGREES_PER_FRAME) -> Conditioning:
    """Resolve ``--first-frame`` and ``--path`` into a :class:`Conditioning` of ``frames`` frames."""
    if frames < 2:
        raise Render3DError(f"--frames {frames}: generate at least 2 frames")
    source = first_frame_source(first_frame, size, model_frame)
    c2w, fov = path_poses(path, frames, source.frame, degrees_per_frame)
    cams = cameras_from_poses(c2w, fov, *size)
    if source.image is not None:
        first = source.image
    else:
        first = render_views(source.scene, cams.K[:1], cams.c2w[:1], size)[0]  # type: ignore[arg-type]
    return Conditioning(first, cams.K, cams.c2w, source.scene, f"{source.name} along {Path(path).name if path != 'orbit' else 'an orbit'}")

