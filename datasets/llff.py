"""LLFF forward-facing scenes: ``poses_bounds.npy`` and ``images_N/`` folders.

``poses_bounds.npy`` is ``N x 17``: a 3x5 matrix per image (camera-to-world rotation with
columns in LLFF's (down, right, back) axis order, the camera centre, and ``(H, W, focal)``
of the full-resolution photo), then the near and far depth bounds of that image.

What this loader does, and does not:
    * the rotation columns are reordered to OpenCV (right, down, forward); the world
      frame is untouched: no re-centring, no rescaling, no NDC. The poses therefore stay
      in the COLMAP world frame they were computed in, so a ``sparse/0`` model next to them
      (LLFF's ``imgs2poses`` output) supplies the sparse points;
    * intrinsics: ``fx = fy = focal``, principal point at the image centre, scaled to the
      size of the images read;
    * ``near_far`` = (smallest near bound, largest far bound); ``forward_facing=True``.

Images are the folder's files sorted by name (LLFF renames them ``image000.png``...), one
per pose; every ``test_every``-th (0, n, 2n, ...) is held out as test (and val).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from render3d.errors import Render3DError

from .colmap_model import find_model, read_points
from .frames import Frame, build_scene, holdout
from .io import find_image_folder, list_images, read_npy, require_dir
from .scene import SceneData


def detect(root: Path) -> bool:
    """True when ``root`` holds ``poses_bounds.npy``."""
    return (root / "poses_bounds.npy").is_file()


def read_poses_bounds(source: Path) -> np.ndarray:
    """The ``N x 17`` float64 array of a ``poses_bounds.npy`` file (Render3DError when unreadable or empty)."""
    array = read_npy(source, "LLFF poses file", "regenerate it with LLFF's imgs2poses")
    if array.ndim != 2 or array.shape[1] != 17 or array.dtype == bool:
        raise Render3DError(f"{source} holds an array of shape {array.shape}, expected N x 17; regenerate it")
    if len(array) == 0:
        raise Render3DError(f"{source} holds no poses (0 x 17); regenerate it with LLFF's imgs2poses")
    return array.astype(np.float64)


def llff_to_opencv(pose: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` from an LLFF ``[3, 4]`` pose with (down, right, back) columns."""
    c2w = np.eye(4)
    c2w[:3, 0] = pose[:, 1]   # right
    c2w[:3, 1] = pose[:, 0]   # down
    c2w[:3, 2] = -pose[:, 2]  # forward = -back
    c2w[:3, 3] = pose[:, 3]
    return c2w


def load_llff(
    path: str | Path,
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    test_every: int = 8,
    images: str = "images",
) -> SceneData:
    """Load an LLFF scene folder (see the module docstring for the conventions).

    Args:
        path: the folder holding ``poses_bounds.npy``.
        downscale: use ``images_N/`` (or resize ``images/``) by this integer factor.
        background: recorded in ``SceneData.background`` (LLFF photos have no alpha).
        test_every: hold out images 0, n, 2n, ... as test and val; 0 keeps all for training.
        images: base name of the image folders.
    """
    root = require_dir(path)
    source = root / "poses_bounds.npy"
    array = read_poses_bounds(source)
    image_dir, shrink = find_image_folder(root, downscale, images)
    files = list_images(image_dir)
    if len(files) != len(array):
        raise Render3DError(
            f"{image_dir} holds {len(files)} images but {source} has {len(array)} poses; "
            "use the image folder the poses were computed for"
        )
    poses = array[:, :15].reshape(-1, 3, 5)
    bounds = array[:, 15:17]
    frames = []
    for pose, near_far, path_ in zip(poses, bounds, files):
        height, width, focal = pose[:, 4]
        if not (np.all(np.isfinite(near_far)) and 0 < near_far[0] < near_far[1]):
            raise Render3DError(f"{source}: frame {path_.name} has invalid near/far bounds {near_far.tolist()}; fix or remove it")
        if not (np.all(np.isfinite(pose[:, 4])) and focal > 0 and width >= 1 and height >= 1):
            raise Render3DError(f"{source}: frame {path_.name} has an invalid height/width/focal {pose[:, 4].tolist()}; fix it")
        K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
        frames.append(
            Frame(
                name=path_.name,
                image_path=path_,
                c2w=llff_to_opencv(pose[:, :4]),
                K=K,
                width=int(round(width)),
                height=int(round(height)),
                source=str(source),
                shrink=shrink,
            )
        )
    train, test = holdout(frames, test_every)
    model = find_model(root)
    points, colors = read_points(model) if model is not None else (np.zeros((0, 3)), None)
    has_points = len(points) > 0
    return build_scene(
        train, test, test,
        fmt="llff", root=root, source=source, background=background,
        points=points if has_points else None,
        point_colors=colors if has_points else None,
        near_far=(float(bounds[:, 0].min()), float(bounds[:, 1].max())),
        forward_facing=True,
    )
