"""Frames from a video for structure from motion: spread over time, sharp, no duplicates.

Two passes over the video, both through ffmpeg (imageio-ffmpeg, which applies a phone
video's rotation metadata, so frames come out upright):

1. every frame, shrunk to at most :data:`SCORE_WIDTH` pixels wide, is scored for
   sharpness (variance of the Laplacian of its grey image) and kept as a small grey
   thumbnail;
2. :func:`choose_frames` splits the frames into ``count`` equal windows of time, keeps the
   sharpest frame of each, then drops a kept frame that looks like the one kept before it
   (a camera that stood still); the chosen frames are decoded again at full size and
   written as ``<stem>_<frame index>.jpg``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image
from scipy import ndimage

from render3d.datasets.io import first_line
from render3d.errors import Render3DError

#: Width (pixels) of the frames scored for sharpness in the first pass.
SCORE_WIDTH = 480
#: Width of the grey thumbnails compared to find near-duplicates.
THUMB_WIDTH = 96
#: A kept frame whose thumbnail differs from the previous kept one by less than this mean
#: absolute difference (grey levels in [0, 1], after removing each thumbnail's mean) is a
#: near-duplicate. Sensor noise of a still camera stays far below it; a hand-held camera
#: moving a few pixels between frames passes it.
DUPLICATE_THRESHOLD = 0.01
#: JPEG quality of the written frames.
JPEG_QUALITY = 95


@dataclass
class FrameScores:
    """First-pass measurements of a video: ``sharpness [N]`` and grey ``thumbs [N, h, w]``; the decoded ``size``."""

    sharpness: np.ndarray
    thumbs: np.ndarray
    size: tuple[int, int]
    fps: float


def _read(path: Path, output_params: Optional[list[str]] = None) -> tuple[dict, Iterator[bytes]]:
    """imageio-ffmpeg's frame generator, opened: ``(metadata, raw RGB frames)``; a one-line error when ffmpeg cannot."""
    import imageio_ffmpeg

    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)  # its note that rotation changed the frame size
    try:
        frames = imageio_ffmpeg.read_frames(str(path), output_params=output_params)
        meta = next(frames)
    except (OSError, RuntimeError, StopIteration, ValueError, IndexError) as exc:
        raise Render3DError(f"cannot read video {path} ({first_line(exc)}); is it a whole video file ffmpeg can read?") from None
    return meta, frames


def _frames(path: Path, size: tuple[int, int], frames: Iterator[bytes]) -> Iterator[np.ndarray]:
    """Raw frames as ``uint8 [H, W, 3]`` arrays; a decoding error mid-way is a one-line error naming the video."""
    width, height = size
    try:
        for raw in frames:
            yield np.frombuffer(raw, np.uint8, width * height * 3).reshape(height, width, 3)
    except (OSError, RuntimeError, ValueError) as exc:
        raise Render3DError(f"video {path} stopped decoding ({first_line(exc)}); the file is damaged: re-export it") from None
    finally:
        frames.close()


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image ``[H, W]`` in [0, 1]: higher is sharper."""
    return float(ndimage.laplace(gray.astype(np.float32)).var())


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A ``THUMB_WIDTH``-wide block-averaged copy of ``grey [H, W]``, its mean removed (exposure changes cancel)."""
    h, w = gray.shape
    step = max(1, w // THUMB_WIDTH)
    h2, w2 = (h // step) * step, (w // step) * step
    small = gray[:h2, :w2].reshape(h2 // step, step, w2 // step, step).mean(axis=(1, 3))
    return (small - small.mean()).astype(np.float32)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0


def score_frames(path: Path, tick: Callable[[], None] = lambda: None) -> FrameScores:
    """First pass over the video ``path``: every frame's sharpness and thumbnail (see the module docstring)."""
    meta, probe = _read(path)  # the upright size, after ffmpeg applies the rotation metadata
    probe.close()
    width, height = meta["size"]
    scale = ["-vf", f"scale={SCORE_WIDTH}:-2"] if width > SCORE_WIDTH else None
    small_meta, frames = _read(path, scale)
    scores, thumbs = [], []
    for rgb in _frames(path, small_meta["size"], frames):
        gray = _gray(rgb)
        scores.append(sharpness(gray))
        thumbs.append(thumbnail(gray))
        tick()
    if not scores:
        raise Render3DError(f"video {path} holds no frames; is it a whole video file?")
    promised = float(meta.get("fps") or 0.0) * float(meta.get("duration") or 0.0)
    if len(scores) < 0.9 * promised:
        warnings.warn(f"video {path} decoded only {len(scores)} of about {promised:.0f} frames; the file may be cut short: "
                      "only the frames read are used", stacklevel=2)
    return FrameScores(np.array(scores), np.stack(thumbs), (int(width), int(height)), float(meta.get("fps") or 0.0))


def choose_frames(scores: FrameScores, count: int) -> list[int]:
    """Indices of the frames to keep: the sharpest of ``count`` equal windows, near-duplicates dropped, in time order."""
    n = len(scores.sharpness)
    edges = np.linspace(0, n, min(count, n) + 1).round().astype(int)
    best = [int(lo) + int(np.argmax(scores.sharpness[lo:hi])) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    kept = [best[0]]
    for index in best[1:]:
        if float(np.abs(scores.thumbs[index] - scores.thumbs[kept[-1]]).mean()) >= DUPLICATE_THRESHOLD:
            kept.append(index)
    return kept


def write_frames(path: Path, indices: list[int], folder: Path, tick: Callable[[], None] = lambda: None) -> list[str]:
    """Second pass: decode the video again and write the frames ``indices`` as JPEGs into ``folder``; their names."""
    meta, frames = _read(path)
    wanted = set(indices)
    digits = max(5, len(str(max(indices))))
    names = []
    for i, rgb in enumerate(_frames(path, meta["size"], frames)):
        if i in wanted:
            name = f"{path.stem}_{i:0{digits}d}.jpg"
            Image.fromarray(rgb).save(folder / name, quality=JPEG_QUALITY)
            names.append(name)
            tick()
        if i >= max(indices):
            break
    if len(names) != len(indices):
        raise Render3DError(f"video {path} gave fewer frames on the second read ({len(names)} of {len(indices)}); "
                            "the file is damaged: re-export it")
    return names
