"""Camera conditioning as per-pixel Plücker ray maps (as in CameraCtrl and CAT3D).

Each pixel's ray, in the coordinates of the clip's first camera, becomes six numbers
``(o x d, d)``: the moment and the unit direction. The map is the same for any scene and
says exactly where every pixel looks, so a model can learn how the view moves. Translations
are divided by ``pose_scale`` (the scene's typical camera distance) so one model works at
any world scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.video.motion import relative_poses

CHANNELS = 6


def plucker_maps(K: Tensor, c2w: Tensor, image_size: tuple[int, int], map_size: tuple[int, int], pose_scale: float = 1.0) -> Tensor:
    """Plücker maps ``[T, 6, h, w]`` of one clip's cameras relative to its first camera.

    Args:
        K: intrinsics ``[T, 3, 3]`` for images of ``image_size`` (width, height).
        c2w: camera-to-world ``[T, 4, 4]``.
        map_size: (width, height) of the maps; rays go through the centres of its pixels.
        pose_scale: translations are divided by this.
    """
    rel = relative_poses(c2w.double()).float()
    rel[:, :3, 3] /= pose_scale
    width, height = image_size
    cams = Cameras(K.float(), rel, width, height).resized(*map_size)
    w, h = map_size
    t = len(cams)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    index = torch.arange(t).repeat_interleave(h * w)
    origins, dirs = cams.rays_at_pixels(index, xs.reshape(-1).repeat(t), ys.reshape(-1).repeat(t))
    moment = torch.linalg.cross(origins, dirs)
    return torch.cat([moment, dirs], dim=-1).reshape(t, h, w, CHANNELS).permute(0, 3, 1, 2).contiguous()
