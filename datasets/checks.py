"""Input checks shared by every loader, each raising a one-line Render3DError.

Loaders never validate on their own: they describe frames (see :mod:`.frames`) and the
shared assembly calls these checks, so every format reports problems the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from render3d.errors import Render3DError

#: Largest ``|R^T R - I|`` entry accepted as a rotation; smaller errors are re-orthonormalised.
ROTATION_TOLERANCE = 1e-2


def check_pose(c2w: np.ndarray, name: str, source: str | Path) -> np.ndarray:
    """Validate one camera-to-world matrix and return it as a clean ``[4, 4]`` float64 rigid transform.

    Raises Render3DError naming ``source`` (the file that holds the pose) and the frame
    ``name`` when the matrix has the wrong shape, holds NaN/inf, is not invertible, or its
    rotation part is not orthonormal (scaled, sheared or mirrored). Rotations that are
    orthonormal up to rounding are snapped to the nearest rotation.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    where = f"{source}: frame {name}"
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4):
        raise Render3DError(f"{where} has a pose of shape {c2w.shape}, expected 4x4 or 3x4; fix that frame")
    if not np.all(np.isfinite(c2w)):
        raise Render3DError(f"{where} has a NaN or infinite pose; fix or remove that frame")
    if not np.allclose(c2w[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise Render3DError(f"{where} has a pose whose last row is not [0, 0, 0, 1]; fix or remove that frame")
    rot = c2w[:3, :3]
    det = float(np.linalg.det(rot))
    if abs(det) < 1e-6:
        raise Render3DError(f"{where} has a degenerate (non-invertible) pose; fix or remove that frame")
    if np.abs(rot.T @ rot - np.eye(3)).max() > ROTATION_TOLERANCE or det < 0:
        raise Render3DError(
            f"{where} has a pose whose rotation is not orthonormal (scaled, sheared or mirrored); fix or remove that frame"
        )
    u, _, vt = np.linalg.svd(rot)
    out = c2w.copy()
    out[:3, :3] = u @ vt
    return out


def check_nonempty(count: int, what: str, source: str | Path) -> None:
    """Raise when a training split has no frames."""
    if count == 0:
        raise Render3DError(f"no {what} in {source}; add frames (with images) to it")


def check_same_size(sizes: Sequence[tuple[int, int]], paths: Sequence[Path]) -> None:
    """Raise naming the first image whose ``(width, height)`` differs from the first one's."""
    for size, path in zip(sizes, paths):
        if tuple(size) != tuple(sizes[0]):
            raise Render3DError(
                f"image {path} is {size[0]}x{size[1]} but {paths[0]} is {sizes[0][0]}x{sizes[0][1]}; "
                "all images of one split must share a size: resize or remove it"
            )


def check_aspect(image_size: tuple[int, int], camera_size: tuple[int, int], path: Path, source: str | Path) -> None:
    """Raise when an image's aspect ratio does not match the camera that describes it.

    Catches rotated photos and images swapped between folders; a one-pixel difference
    from rounding a downscaled size is accepted.
    """
    (w, h), (cw, ch) = image_size, camera_size
    expected_h = w * ch / cw
    if abs(h - expected_h) > 1.0 + 0.01 * h:
        raise Render3DError(
            f"image {path} is {w}x{h} but its camera in {source} is {cw}x{ch} (another aspect ratio); "
            "use the images the poses were computed from"
        )


def check_background(background: Sequence[float]) -> tuple[float, float, float]:
    """The background as three floats in [0, 1], else a Render3DError saying so."""
    try:
        values = tuple(float(v) for v in background)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise Render3DError(f"background {background!r} is not an RGB colour; pass three values in [0, 1], e.g. (1, 1, 1)")
    return values  # type: ignore[return-value]
