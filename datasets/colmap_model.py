"""Reading (text and binary) and writing (binary) COLMAP sparse models.

Only what a loader needs is kept: cameras, image poses and names, and 3D points with
colours. 2D keypoints and point tracks are skipped when reading and written empty.
File layouts: https://colmap.github.io/format.html
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np

from render3d.errors import Render3DError

from .io import require_file

#: COLMAP camera models: id -> (name, number of parameters).
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
_MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    """One COLMAP camera: ``model`` name, image size and the model's parameters."""

    id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class ColmapImage:
    """One registered image: world-to-camera rotation ``qvec`` (w, x, y, z) and ``tvec``."""

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    """A sparse model; ``points`` ``[P, 3]`` float64 and ``colors`` ``[P, 3]`` uint8 may be empty."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: np.ndarray
    colors: np.ndarray


def find_model(root: Path) -> Optional[Path]:
    """The folder holding the sparse model (``sparse/0`` or ``sparse``), or None."""
    for folder in (root / "sparse" / "0", root / "sparse"):
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder
    return None


def read_model(folder: Path) -> ColmapModel:
    """Read a model from ``folder``: binary files when ``cameras.bin`` exists, else text.

    ``points3D`` is optional (an empty cloud when absent).
    """
    binary = (folder / "cameras.bin").is_file()
    ext = ".bin" if binary else ".txt"
    cameras_path, images_path, points_path = (folder / f"{n}{ext}" for n in ("cameras", "images", "points3D"))
    require_file(cameras_path, what="COLMAP cameras file")
    require_file(images_path, what="COLMAP images file")
    try:
        if binary:
            cameras = _read_cameras_bin(cameras_path)
            images = _read_images_bin(images_path)
            points, colors = _read_points_bin(points_path) if points_path.is_file() else _no_points()
        else:
            cameras = _read_cameras_txt(cameras_path)
            images = _read_images_txt(images_path)
            points, colors = _read_points_txt(points_path) if points_path.is_file() else _no_points()
    except _ParseError as e:
        raise Render3DError(f"{e.path} is not a valid COLMAP file ({e.reason}); re-export the model from COLMAP") from None
    except OSError as e:
        raise Render3DError(f"cannot read {e.filename or folder} ({e.strerror or e}); check the file and its permissions") from None
    for image in images.values():
        if image.camera_id not in cameras:
            raise Render3DError(
                f"{images_path}: image {image.name} uses camera {image.camera_id}, which is not in {cameras_path}; "
                "re-export the model"
            )
    return ColmapModel(cameras, images, points, colors)


def read_points(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Only the points and colours of the model in ``folder`` (empty when it has no points3D file)."""
    try:
        if (folder / "points3D.bin").is_file():
            return _read_points_bin(folder / "points3D.bin")
        if (folder / "points3D.txt").is_file():
            return _read_points_txt(folder / "points3D.txt")
    except _ParseError as e:
        raise Render3DError(f"{e.path} is not a valid COLMAP file ({e.reason}); re-export the model from COLMAP") from None
    except OSError as e:
        raise Render3DError(f"cannot read {e.filename or folder} ({e.strerror or e}); check the file and its permissions") from None
    return _no_points()


class _ParseError(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


def _no_points() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)


def finite_points(xyz: np.ndarray, rgb: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The points whose coordinates are finite (also in float32); one warning counts the others, which are dropped."""
    with np.errstate(over="ignore"):
        finite = np.all(np.isfinite(xyz.astype(np.float32)), axis=1)
    if not finite.all():
        warnings.warn(
            f"{path}: dropped {int((~finite).sum())} of {len(xyz)} points with NaN, infinite or out-of-range coordinates",
            stacklevel=2,
        )
    return xyz[finite], rgb[finite]


def _data_lines(path: Path) -> list[str]:
    """Lines of a text file without comments (blank lines kept: images.txt needs them)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\r\n") for line in f if not line.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for line in _data_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cam_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = tuple(float(v) for v in parts[4:])
        except (IndexError, ValueError):
            raise _ParseError(path, f"bad camera line {line.strip()[:60]!r}") from None
        cameras[cam_id] = ColmapCamera(cam_id, model, width, height, params)
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    lines = _data_lines(path)
    images = {}
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        parts = line.split(maxsplit=9)
        try:
            image_id = int(parts[0])
            qvec = np.array([float(v) for v in parts[1:5]])
            tvec = np.array([float(v) for v in parts[5:8]])
            camera_id, name = int(parts[8]), parts[9]
        except (IndexError, ValueError):
            raise _ParseError(path, f"bad image line {line[:60]!r}") from None
        images[image_id] = ColmapImage(image_id, qvec, tvec, camera_id, name)
        i += 1  # the second line of each image lists its 2D points (maybe blank)
    return images


def _read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for line in _data_lines(path):
        parts = line.split()
        if not parts:
            continue
        try:
            xyz.append([float(v) for v in parts[1:4]])
            rgb.append([min(max(int(v), 0), 255) for v in parts[4:7]])
        except ValueError:
            raise _ParseError(path, f"bad point line {line.strip()[:60]!r}") from None
        if len(xyz[-1]) != 3 or len(rgb[-1]) != 3:
            raise _ParseError(path, f"bad point line {line.strip()[:60]!r}")
    if not xyz:
        return _no_points()
    return finite_points(np.array(xyz, dtype=np.float64), np.array(rgb, dtype=np.uint8), path)


class _Reader:
    """Little-endian struct reader that turns short reads and impossible counts into _ParseError."""

    #: Longest image name accepted in images.bin (a longer one means the file is corrupt).
    MAX_NAME = 4096

    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path
        self.size = os.fstat(f.fileno()).st_size

    def remaining(self) -> int:
        return self.size - self.f.tell()

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise _ParseError(self.path, "file ends early")
        return struct.unpack("<" + fmt, data)

    def count(self, record_size: int, what: str) -> int:
        """A uint64 count of records of at least ``record_size`` bytes, checked against the bytes left."""
        (n,) = self.read("Q")
        if n * record_size > self.remaining():
            raise _ParseError(self.path, f"it claims {n} {what}, more than the file holds")
        return n

    def skip(self, nbytes: int) -> None:
        if nbytes > self.remaining():
            raise _ParseError(self.path, "file ends early")
        self.f.seek(nbytes, os.SEEK_CUR)

    def string(self) -> str:
        chars = bytearray()
        while len(chars) <= self.MAX_NAME:
            c = self.f.read(1)
            if not c:
                raise _ParseError(self.path, "file ends early")
            if c == b"\x00":
                return chars.decode("utf-8", errors="replace")
            chars += c
        raise _ParseError(self.path, f"an image name is longer than {self.MAX_NAME} bytes")


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        for _ in range(r.count(24 + 8, "cameras")):
            cam_id, model_id, width, height = r.read("iiQQ")
            if model_id not in CAMERA_MODELS:
                raise _ParseError(path, f"unknown camera model id {model_id}")
            model, n = CAMERA_MODELS[model_id]
            cameras[cam_id] = ColmapCamera(cam_id, model, width, height, r.read(f"{n}d"))
    return cameras


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as f:
        r = _Reader(f, path)
        for _ in range(r.count(64 + 1 + 8, "images")):
            values = r.read("i7di")
            name = r.string()
            r.skip(24 * r.count(24, "2D points"))  # x, y (double), point3D id (int64)
            image_id, camera_id = values[0], values[8]
            images[image_id] = ColmapImage(image_id, np.array(values[1:5]), np.array(values[5:8]), camera_id, name)
    return images


def _read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        r = _Reader(f, path)
        count = r.count(51, "points")  # id, xyz, rgb, error, track length
        xyz = np.empty((count, 3))
        rgb = np.empty((count, 3), np.uint8)
        for i in range(count):
            values = r.read("Q3d3BdQ")
            xyz[i], rgb[i] = values[1:4], values[4:7]
            r.skip(8 * values[8])  # track: (image id, point2D index) int32 pairs
    return finite_points(xyz, rgb, path)


def write_model_binary(model: ColmapModel, folder: Path) -> None:
    """Write ``cameras.bin``, ``images.bin`` and ``points3D.bin`` into ``folder`` (created).

    Images are written without 2D points and points without tracks; reading the folder
    back gives the same :class:`ColmapModel` (point errors are written as 0).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.cameras)))
        for cam in model.cameras.values():
            model_id, n = _MODEL_IDS[cam.model]
            if len(cam.params) != n:
                raise ValueError(f"camera {cam.id}: model {cam.model} takes {n} parameters, got {len(cam.params)}")
            f.write(struct.pack(f"<iiQQ{n}d", cam.id, model_id, cam.width, cam.height, *cam.params))
    with open(folder / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.images)))
        for im in model.images.values():
            f.write(struct.pack("<i7di", im.id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id))
            f.write(im.name.encode("utf-8") + b"\x00")
            f.write(struct.pack("<Q", 0))
    with open(folder / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.points)))
        for i, (p, c) in enumerate(zip(model.points, model.colors)):
            f.write(struct.pack("<Q3d3BdQ", i + 1, *map(float, p), *map(int, c), 0.0, 0))
