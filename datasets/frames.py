"""From per-frame records to :class:`SceneData`: the half of every loader that is the same.

A loader only parses its format into :class:`Frame` records (image path, OpenCV pose,
intrinsics at a stated resolution) and picks its splits; :func:`build_scene` then checks
the poses, reads and resizes the images, scales the intrinsics to the images actually
read, and estimates bounds and near/far (see :mod:`.geometry`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, TypeVar

import numpy as np
import torch

from render3d.cameras import Cameras
from render3d.errors import Render3DError

from .checks import check_aspect, check_background, check_nonempty, check_pose, check_same_size
from .geometry import estimate_bounds, estimate_near_far, looks_forward_facing
from .io import composite, downscaled_size, read_depth, read_image, read_mask, resize_image, resize_nearest
from .scene import SceneData, Split

T = TypeVar("T")

Background = Sequence[float]


@dataclass
class Frame:
    """One posed image as a loader describes it, before any file is read.

    Attributes:
        name: shown in ``Split.names`` and error messages (usually the image file name).
        image_path: the image file to read.
        c2w: ``[4, 4]`` camera-to-world, OpenCV axes (loaders convert before building frames).
        K: ``[3, 3]`` intrinsics for an image of ``width`` x ``height`` pixels.
        width, height: the resolution ``K`` refers to (e.g. COLMAP's camera size).
        source: the file that describes this frame (json, images.txt...), for error messages.
        shrink: factor by which the image file is downscaled after reading (1 when the
            file is already at the wanted resolution, e.g. from ``images_8/``).
        distortion: optional OpenCV ``(k1, k2, p1, p2)``.
        depth_path, depth_scale: optional depth map; depth = stored value / depth_scale.
        mask_path: optional mask image (True where the value is above half).
    """

    name: str
    image_path: Path
    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    source: str
    shrink: int = 1
    distortion: Optional[np.ndarray] = None
    depth_path: Optional[Path] = None
    depth_scale: float = 1.0
    mask_path: Optional[Path] = None


def holdout(items: Sequence[T], test_every: int) -> tuple[list[T], list[T]]:
    """LLFF hold-out: items ``0, n, 2n, ...`` go to test, the rest to train (``n <= 0``: no test)."""
    if test_every <= 0:
        return list(items), []
    train = [x for i, x in enumerate(items) if i % test_every != 0]
    test = [x for i, x in enumerate(items) if i % test_every == 0]
    return train, test


@dataclass
class _Loaded:
    rgb: np.ndarray
    alpha: Optional[np.ndarray]
    depth: Optional[np.ndarray]
    mask: Optional[np.ndarray]


def _load_frame(frame: Frame, background: Background) -> _Loaded:
    image = read_image(frame.image_path, frame.source)
    native = (image.shape[1], image.shape[0])
    check_aspect(native, (frame.width, frame.height), frame.image_path, frame.source)
    size = downscaled_size(*native, frame.shrink)
    rgb, alpha = composite(resize_image(image, size), background)
    depth = mask = None
    if frame.depth_path is not None:
        depth = read_depth(frame.depth_path, frame.depth_scale, frame.source)
        _check_map_size(depth, native, frame.depth_path, frame.image_path)
        depth = resize_nearest(depth, size)
    if frame.mask_path is not None:
        mask = read_mask(frame.mask_path, frame.source)
        _check_map_size(mask, native, frame.mask_path, frame.image_path)
        mask = resize_nearest(mask, size)
    return _Loaded(rgb, alpha, depth, mask)


def _check_map_size(array: np.ndarray, native: tuple[int, int], path: Path, image_path: Path) -> None:
    if (array.shape[1], array.shape[0]) != native:
        raise Render3DError(
            f"{path} is {array.shape[1]}x{array.shape[0]} but its image {image_path} is {native[0]}x{native[1]}; "
            "write it at the image's resolution"
        )


def _map_parallel(fn, items: list) -> list:
    workers = min(8, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))  # re-raises the first failure in frame order


def _check_float32_cameras(cameras: Cameras, frames: Sequence[Frame]) -> None:
    """Raise naming the first frame whose pose or intrinsics did not survive the cast to float32.

    Values beyond ~3e38 become infinite and focal lengths below ~1e-45 become 0 (a
    singular intrinsics matrix); both come from corrupt files, never from real cameras.
    """
    K, c2w = cameras.K, cameras.c2w
    ok = torch.isfinite(K).flatten(1).all(1) & torch.isfinite(c2w).flatten(1).all(1) & (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)
    if not ok.all():
        frame = frames[int((~ok).nonzero()[0])]
        raise Render3DError(
            f"{frame.source}: frame {frame.name} has a pose or focal length out of range (beyond float32, or a focal "
            "length that rounds to 0); fix that frame"
        )


def load_split(frames: Sequence[Frame], background: Background, empty_size: tuple[int, int] = (1, 1)) -> Split:
    """Read the images (and depth / masks) of ``frames`` into one :class:`Split`.

    Images are resized by each frame's ``shrink``; they must then share one size (the
    first mismatching file is named otherwise). Intrinsics are scaled from each frame's
    stated resolution to that size. An empty ``frames`` gives an empty split of
    ``empty_size`` (width, height).
    """
    if not frames:
        w, h = empty_size
        cams = Cameras(torch.zeros(0, 3, 3), torch.zeros(0, 4, 4), w, h)
        return Split(torch.zeros(0, h, w, 3, dtype=torch.uint8), cams, [])
    loaded = _map_parallel(lambda f: _load_frame(f, background), list(frames))
    check_same_size([(x.rgb.shape[1], x.rgb.shape[0]) for x in loaded], [f.image_path for f in frames])
    height, width = loaded[0].rgb.shape[:2]

    K = np.stack([np.diag([width / f.width, height / f.height, 1.0]) @ f.K for f in frames])
    c2w = np.stack([f.c2w for f in frames])
    distortion = None
    if any(f.distortion is not None and np.any(f.distortion != 0) for f in frames):
        distortion = torch.tensor(
            np.stack([np.zeros(4) if f.distortion is None else f.distortion for f in frames]), dtype=torch.float32
        )
    cameras = Cameras(torch.tensor(K, dtype=torch.float32), torch.tensor(c2w, dtype=torch.float32), width, height, distortion)
    _check_float32_cameras(cameras, frames)

    images = torch.from_numpy(np.stack([x.rgb for x in loaded]))
    alpha = depths = masks = None
    if any(x.alpha is not None for x in loaded):
        opaque = np.full((height, width, 1), 255, np.uint8)
        alpha = torch.from_numpy(np.stack([opaque if x.alpha is None else x.alpha for x in loaded]))
    if any(x.depth is not None for x in loaded):  # frames without depth get 0 (= no depth)
        none = np.zeros((height, width), np.float32)
        depths = torch.from_numpy(np.stack([none if x.depth is None else x.depth for x in loaded]))
    if any(x.mask is not None for x in loaded):  # frames without a mask are valid everywhere
        full = np.ones((height, width), bool)
        masks = torch.from_numpy(np.stack([full if x.mask is None else x.mask for x in loaded]))
    return Split(images, cameras, [f.name for f in frames], alpha, depths, masks)


def build_scene(
    train: Sequence[Frame],
    val: Sequence[Frame],
    test: Sequence[Frame],
    *,
    fmt: str,
    root: Path,
    source: str | Path,
    background: Background = (1.0, 1.0, 1.0),
    points: Optional[np.ndarray] = None,
    point_colors: Optional[np.ndarray] = None,
    bounds: Optional[np.ndarray] = None,
    near_far: Optional[tuple[float, float]] = None,
    forward_facing: Optional[bool] = None,
) -> SceneData:
    """Check, read and assemble the frames of the three splits into a :class:`SceneData`.

    ``source`` names the file (or folder) the frames came from, for the empty-split error.
    When ``val is test`` the split is read once and shared. ``bounds``, ``near_far`` and
    ``forward_facing`` default to the estimates of :mod:`.geometry`.
    """
    check_nonempty(len(train), "training frames", source)
    background = check_background(background)
    for frame in [*train, *val, *test]:
        frame.c2w = check_pose(frame.c2w, frame.name, frame.source)

    train_split = load_split(train, background)
    size = (train_split.cameras.width, train_split.cameras.height)
    test_split = load_split(test, background, size)
    val_split = test_split if val is test else load_split(val, background, size)

    cams = train_split.cameras
    c2w = cams.c2w.double().numpy()
    K = cams.K.double().numpy()
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
    if forward_facing is None:
        forward_facing = looks_forward_facing(c2w)
    if bounds is None:
        bounds = estimate_bounds(c2w, K, cams.width, cams.height, points, near_far, forward_facing)
    if near_far is None:
        near_far = estimate_near_far(c2w, K, cams.width, cams.height, bounds, points)
    bounds = torch.tensor(np.asarray(bounds), dtype=torch.float32)  # float32 from here on: check after the cast
    with np.errstate(over="ignore"):
        near_far_ok = np.all(np.isfinite(np.asarray(near_far, dtype=np.float32)))
    if not (torch.isfinite(bounds).all() and near_far_ok):
        raise Render3DError(
            f"the scene box or near/far estimated for {source} is NaN or infinite (extreme camera positions or points); "
            "fix those values"
        )

    return SceneData(
        train=train_split,
        val=val_split,
        test=test_split,
        bounds=bounds,
        near_far=(float(near_far[0]), float(near_far[1])),
        background=torch.tensor(list(background), dtype=torch.float32),
        points=None if points is None else torch.tensor(points, dtype=torch.float32),
        point_colors=None if point_colors is None else torch.tensor(np.asarray(point_colors), dtype=torch.uint8),
        forward_facing=forward_facing,
        format=fmt,
        root=Path(root),
    )
