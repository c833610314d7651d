"""Size limits checked before anything big is allocated: image sizes, frame counts, voxel grids.

A value a user (or a file, or a browser) gives that would need more memory than the
machine has, or run for days, ends in one line naming the option and the limit.
"""

from __future__ import annotations

import math
import os
from typing import Optional

from render3d.errors import Render3DError

MAX_SIDE = 8192  # pixels, either side of one rendered image
MAX_PIXELS = 7680 * 4320  # an 8K UHD frame
MAX_FRAMES = 100_000  # frames of one video or camera path
MAX_FPS = 240.0
MAX_SECONDS = 3600.0
MESH_RESOLUTION = (8, 1024)  # voxels along the longest side


def available_memory() -> Optional[int]:
    """Bytes of memory available now (``MemAvailable`` on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(num_bytes: float, what: str, fix: str) -> None:
    """A one-line error when ``num_bytes`` is more than the memory available now."""
    free = available_memory()
    if free is not None and num_bytes > free:
        raise Render3DError(f"{what} would need about {num_bytes / 2**30:.1f} GiB but {free / 2**30:.1f} GiB is free: {fix}")


def check_image_size(width: int, height: int, what: str = "--resolution") -> tuple[int, int]:
    """``(width, height)`` when both are 1..MAX_SIDE and the frame is at most MAX_PIXELS, else one line."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise Render3DError(f"{what} {width}x{height} is out of range: each side must be 1-{MAX_SIDE} pixels")
    if width * height > MAX_PIXELS:
        raise Render3DError(f"{what} {width}x{height} has more than {MAX_PIXELS:,} pixels (8K): choose a smaller size")
    return width, height


def check_timing(fps: float, seconds: float, what: str = "") -> int:
    """The frame count of ``fps`` x ``seconds``, after checking both are finite, positive and bounded."""
    where = f"{what}: " if what else ""
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise Render3DError(f"{where}fps {fps} is out of range: use a number in (0, {MAX_FPS:g}]")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise Render3DError(f"{where}seconds {seconds} is out of range: use a number in (0, {MAX_SECONDS:g}]")
    frames = max(1, int(round(fps * seconds)))
    if frames > MAX_FRAMES:
        raise Render3DError(f"{where}{fps:g} fps for {seconds:g} s is {frames:,} frames; at most {MAX_FRAMES:,}: lower fps or seconds")
    return frames


def check_mesh_resolution(resolution: int, bytes_per_voxel: int = 40) -> int:
    """A voxel resolution in range whose grid fits in memory."""
    lo, hi = MESH_RESOLUTION
    if not lo <= resolution <= hi:
        raise Render3DError(f"--mesh-resolution {resolution} is out of range: use {lo}-{hi} voxels along the longest side")
    check_memory(float(resolution) ** 3 * bytes_per_voxel, f"--mesh-resolution {resolution}", "use a lower --mesh-resolution")
    return resolution
