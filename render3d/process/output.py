"""The processed scene folder, read as it is by ``render3d train | info | view`` and by other tools.

Layout of ``OUT``::

    images/             undistorted images, pinhole cameras (photos keep their names,
                        video frames are <stem>_<frame index>.jpg, in time order)
    images_2/ _4/ _8/   the same, 2, 4 and 8 times smaller (rounded sizes)
    sparse/0/           COLMAP binary model (cameras.bin, images.bin, points3D.bin), PINHOLE,
                        in the oriented frame (see :mod:`.orient`)
    sparse_pc.ply       the sparse points with colours (binary PLY), oriented
    transforms.json     nerfstudio layout: OpenGL camera-to-world per frame, intrinsics,
                        ``applied_transform`` / ``applied_scale``, ``ply_file_path``
    colmap/             the raw work: database.db (features and matches) with the fingerprint
                        that lets a re-run reuse it (see :mod:`.reuse`), sparse/ (the
                        distorted model before orientation) and COLMAP's log (colmap-<time>)
    process.json        what was given, what registered, how long each stage took

``transforms.json`` is what ``render3d`` loads (it is detected first), with the sparse
points from ``ply_file_path``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from render3d.cameras import opencv_to_opengl
from render3d.datasets.io import downscaled_size, list_images
from render3d.export.pointcloud import save_point_cloud

from .stages import Stages

#: Downscale factors written beside ``images/``.
DOWNSCALES = (2, 4, 8)


def cameras_to_world(reconstruction: Any) -> tuple[list[str], np.ndarray]:
    """Registered image names (sorted) and their OpenCV camera-to-world poses ``[N, 4, 4]``."""
    images = sorted(reconstruction.images.values(), key=lambda im: im.name)
    c2w = []
    for image in images:
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        c2w.append(np.linalg.inv(w2c))
    return [im.name for im in images], np.array(c2w)


def sparse_points(reconstruction: Any) -> tuple[np.ndarray, np.ndarray]:
    """The reconstruction's points ``[M, 3]`` (float64) and colours ``[M, 3]`` (uint8)."""
    points = list(reconstruction.points3D.values())
    xyz = np.array([p.xyz for p in points], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in points], dtype=np.uint8).reshape(-1, 3)
    return xyz, rgb


def transform_reconstruction(reconstruction: Any, transform: np.ndarray) -> None:
    """Move the pycolmap reconstruction (poses and points) by the similarity ``transform [3, 4]``, in place."""
    import pycolmap

    reconstruction.transform(pycolmap.Sim3d(np.asarray(transform, dtype=np.float64)))


def write_downscales(stages: Stages, images: Path, factors: Sequence[int] = DOWNSCALES) -> None:
    """``images_N/`` beside ``images/`` for each factor: the same names, Lanczos-resized to the rounded size."""
    files = list_images(images)
    with stages.stage("downscales", total=len(files)) as bar:
        for factor in factors:
            (images.parent / f"images_{factor}").mkdir(exist_ok=True)
        for path in files:
            with Image.open(path) as image:
                image.load()
                for factor in factors:
                    small = image.resize(downscaled_size(*image.size, factor), Image.Resampling.LANCZOS)
                    kept = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
                    small.save(images.parent / f"images_{factor}" / path.name, **kept)
            bar.update(1)


def transforms_json(reconstruction: Any, transform: np.ndarray) -> dict[str, Any]:
    """The nerfstudio ``transforms.json`` of an (undistorted, oriented) reconstruction.

    Intrinsics are written per frame (photos of different sizes are different cameras);
    poses are OpenGL camera-to-world, as nerfstudio and instant-ngp read them.
    """
    names, c2w = cameras_to_world(reconstruction)
    by_name = {im.name: im for im in reconstruction.images.values()}
    frames = []
    for name, pose in zip(names, c2w):
        image = by_name[name]
        camera = reconstruction.cameras[image.camera_id]
        frames.append({
            "file_path": f"images/{name}",
            "transform_matrix": opencv_to_opengl(torch.from_numpy(pose)).tolist(),
            "colmap_im_id": int(image.image_id),
            "camera_model": "PINHOLE",
            "fl_x": float(camera.focal_length_x), "fl_y": float(camera.focal_length_y),
            "cx": float(camera.principal_point_x), "cy": float(camera.principal_point_y),
            "w": int(camera.width), "h": int(camera.height),
        })
    scale = float(np.cbrt(np.linalg.det(transform[:, :3])))
    return {
        "camera_model": "PINHOLE",
        "frames": frames,
        "applied_transform": np.asarray(transform).tolist(),
        "applied_scale": scale,
        "ply_file_path": "sparse_pc.ply",
    }


def write_scene(stages: Stages, reconstruction: Any, transform: np.ndarray, undistorted_images: Path, out: Path) -> None:
    """Write the layout of the module docstring (but ``process.json``) into ``out`` from the undistorted model."""
    transform_reconstruction(reconstruction, transform)
    shutil.move(str(undistorted_images), str(out / "images"))
    (out / "sparse" / "0").mkdir(parents=True)
    reconstruction.write_binary(str(out / "sparse" / "0"))
    xyz, rgb = sparse_points(reconstruction)
    if len(xyz):
        save_point_cloud(torch.from_numpy(xyz), torch.from_numpy(rgb).float() / 255.0, out / "sparse_pc.ply")
    meta = transforms_json(reconstruction, transform)
    if not len(xyz):
        del meta["ply_file_path"]
    (out / "transforms.json").write_text(json.dumps(meta, indent=2))
    write_downscales(stages, out / "images")
