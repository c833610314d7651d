"""Input checks shared by every loader, each raising a one-line Render3DError.

Loaders never validate on their own: they describe frames (see :mod:`.frames`) and the
shared assembly calls these checks, so every format reports problems the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

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


# --------------------------------------------------------------------------- fields of json documents


def describe(value: Any, limit: int = 40) -> str:
    """``repr(value)`` shortened to about ``limit`` characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _range_text(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool, whole: bool) -> str:
    """How a range reads in a message: ``positive``, ``>= 1``, ``in (0, 240]``, ``a whole number in [1, 8192]``."""
    if low is not None and high is not None:
        text = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = "positive" if (low == 0 and low_open and not whole) else f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        text = f"{'<' if high_open else '<='} {high:g}"
    else:
        text = ""
    return f"a whole number {text}".rstrip() if whole else text


def check_number(
    value: Any,
    field: str,
    where: str | Path,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    whole: bool = False,
) -> float:
    """``value`` as a float when it is a finite json number (not a bool) in the given range.

    Otherwise raises a one-line Render3DError ``"{where}: {field} must be ..., got {value}"``,
    e.g. ``"scene/transforms.json: w must be a whole number >= 1, got 'abc'"``. ``low`` /
    ``high`` bound the value (excluded with ``low_open`` / ``high_open``); ``whole`` asks
    for an integer value (``640.0`` is accepted).
    """
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        number = float(value)  # OverflowError for integers beyond float range
    except (TypeError, OverflowError):
        number = math.nan
    if not math.isfinite(number):
        raise Render3DError(f"{where}: {field} must be a finite number, got {describe(value)}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above or (whole and not number.is_integer()):
        expected = _range_text(low, high, low_open, high_open, whole)
        raise Render3DError(f"{where}: {field} must be {expected}, got {describe(value)}")
    return number


def check_whole(value: Any, field: str, where: str | Path, *, low: int = 0, high: Optional[int] = None) -> int:
    """``value`` as an int when it is a whole json number in ``[low, high]`` (see :func:`check_number`)."""
    return int(check_number(value, field, where, low=low, high=high, whole=True))


def check_vector(value: Any, size: int, field: str, where: str | Path) -> tuple[float, ...]:
    """``value`` as ``size`` finite floats when it is a json list of that many numbers, else a one-line Render3DError."""
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise Render3DError(f"{where}: {field} must be a list of {size} numbers, got {describe(value)}")
    return tuple(check_number(v, f"{field}[{i}]", where) for i, v in enumerate(value))


def non_finite_field(document: Any) -> Optional[str]:
    """The path (``keyframes[2].fov``) of the first NaN or infinite number in a parsed json document, or None.

    Walks the document without recursion, so any nesting depth that ``json`` parsed is fine.
    """
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "the document"
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None
