"""COLMAP scenes: a sparse model (``sparse/0/`` or ``sparse/``, text or binary) and photos.

COLMAP stores world-to-camera poses (quaternion w, x, y, z and translation) in OpenCV
axes; they are inverted to camera-to-world, nothing else. Supported camera models:
SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV (distortion kept as
``(k1, k2, p1, p2)``); undistort other models with ``colmap image_undistorter``.

Images come from ``images_N/`` for ``downscale=N`` when it exists, else from ``images/``
resized by N; intrinsics are scaled to the size actually read. When the names in the
model are not in that folder (LLFF-style ``image000.png`` renames), the model's images
sorted by name are matched with the folder's images sorted by name, as 3DGS loaders do.
Images sorted by name, every ``test_every``-th (0, n, 2n, ...) is held out as test (and
val). The sparse points and their colours become ``SceneData.points`` / ``point_colors``
and set bounds and near/far; ``forward_facing`` is estimated from the viewing directions
(see :mod:`.geometry`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from render3d.cameras import qvec_to_rotmat
from render3d.errors import Render3DError

from .colmap_model import ColmapCamera, ColmapImage, find_model, read_model
from .frames import Frame, build_scene, holdout
from .io import find_image_folder, is_file, list_images, printable, require_dir
from .scene import SceneData

#: Supported camera models -> number of parameters.
SUPPORTED_MODELS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8}


def detect(root: Path) -> bool:
    """True when ``root`` has ``sparse/0/`` or ``sparse/`` with ``cameras.txt`` or ``cameras.bin``."""
    return find_model(root) is not None


def camera_intrinsics(camera: ColmapCamera, source: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(K [3, 3], distortion (k1, k2, p1, p2) or None)`` of a COLMAP camera.

    Raises a one-line Render3DError naming ``source`` (the cameras file) and the camera
    for an unsupported model, a wrong parameter count, an image size below 1x1, a focal
    length that is not positive and finite, or a NaN / infinite principal point or
    distortion.
    """
    n = SUPPORTED_MODELS.get(camera.model)
    if n is None:
        raise Render3DError(
            f"{source}: camera {camera.id} uses the {camera.model} model, which is not supported "
            f"({', '.join(SUPPORTED_MODELS)}); undistort the images with colmap image_undistorter"
        )
    if len(camera.params) != n:
        raise Render3DError(
            f"{source}: camera {camera.id} ({camera.model}) has {len(camera.params)} parameters, expected {n}; fix the model"
        )
    where = f"{source}: camera {camera.id}"
    if camera.width < 1 or camera.height < 1:
        raise Render3DError(
            f"{where} has an image size of {camera.width}x{camera.height}; width and height must be at least 1 pixel: fix the model"
        )
    p = camera.params
    dist = np.zeros(4)
    if camera.model == "SIMPLE_PINHOLE":
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif camera.model == "PINHOLE":
        fx, fy, cx, cy = p
    elif camera.model == "SIMPLE_RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0] = p[1], p[2], p[3]
    elif camera.model == "RADIAL":
        fx = fy = p[0]
        cx, cy, dist[0], dist[1] = p[1], p[2], p[3], p[4]
    else:  # OPENCV
        fx, fy, cx, cy = p[:4]
        dist[:] = p[4:8]
    if not all(math.isfinite(f) and f > 0 for f in (fx, fy)):
        raise Render3DError(f"{where} has a focal length of {fx:g}, {fy:g}; it must be a positive finite number: fix the model")
    if not all(math.isfinite(c) for c in (cx, cy)):
        raise Render3DError(f"{where} has a principal point ({cx:g}, {cy:g}) that is not finite; fix the model")
    if not np.all(np.isfinite(dist)):
        raise Render3DError(f"{where} has a distortion parameter that is NaN or infinite; fix the model")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    return K, (dist if np.any(dist != 0) else None)


def camera_to_world(image: ColmapImage) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` from COLMAP's world-to-camera ``qvec`` / ``tvec``.

    A NaN or zero quaternion yields a NaN matrix, which the shared pose check reports.
    """
    qvec = np.asarray(image.qvec, dtype=np.float64)
    if not np.all(np.isfinite(qvec)) or np.linalg.norm(qvec) < 1e-12:
        rot = np.full((3, 3), np.nan)
    else:
        rot = qvec_to_rotmat(torch.from_numpy(qvec)).numpy()
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T
    c2w[:3, 3] = -rot.T @ np.asarray(image.tvec, dtype=np.float64)
    return c2w


def match_images(names: Sequence[str], folder: Path, source: Path) -> list[Path]:
    """Image files for ``names`` (already sorted): by name when they exist, else by sorted order."""
    by_name = [folder / name for name in names]
    exists = [is_file(p) for p in by_name]
    if all(exists):
        return by_name
    if any(exists):
        missing = by_name[exists.index(False)]
        raise Render3DError(f"image not found: {printable(missing)} (listed in {source}); restore the file or use the matching images folder")
    files = list_images(folder)
    if len(files) != len(names):
        raise Render3DError(
            f"{folder} holds {len(files)} images but {source} lists {len(names)} (none found by name); "
            "put exactly the model's images there, named as in the model or in the same sorted order"
        )
    return files


def load_colmap(
    path: str | Path,
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    test_every: int = 8,
    images: str = "images",
) -> SceneData:
    """Load a COLMAP scene folder.

    Args:
        path: the folder holding ``sparse/`` and the image folders.
        downscale: use ``images_N/`` (or resize ``images/``) by this integer factor.
        background: recorded in ``SceneData.background`` (COLMAP photos have no alpha).
        test_every: hold out images 0, n, 2n, ... (sorted by name) as test and val; 0: none.
        images: base name of the image folders (``images``, ``images_2``, ...).
    """
    root = require_dir(path)
    folder = find_model(root)
    if folder is None:
        raise Render3DError(f"no COLMAP model in {root}; expected sparse/0/ or sparse/ with cameras.txt or cameras.bin")
    model = read_model(folder)
    binary = (folder / "cameras.bin").is_file()
    source = folder / ("images.bin" if binary else "images.txt")
    cameras_file = folder / ("cameras.bin" if binary else "cameras.txt")
    image_dir, shrink = find_image_folder(root, downscale, images)
    entries = sorted(model.images.values(), key=lambda im: im.name)
    paths = match_images([im.name for im in entries], image_dir, source)

    frames = []
    for entry, image_path in zip(entries, paths):
        camera = model.cameras[entry.camera_id]
        K, dist = camera_intrinsics(camera, cameras_file)
        frames.append(
            Frame(
                name=image_path.relative_to(image_dir).as_posix() if image_path.is_relative_to(image_dir) else image_path.name,
                image_path=image_path,
                c2w=camera_to_world(entry),
                K=K,
                width=camera.width,
                height=camera.height,
                source=str(source),
                shrink=shrink,
                distortion=dist,
            )
        )
    train, test = holdout(frames, test_every)
    has_points = len(model.points) > 0
    return build_scene(
        train, test, test,
        fmt="colmap", root=root, source=source, background=background,
        points=model.points if has_points else None,
        point_colors=model.colors if has_points else None,
    )
