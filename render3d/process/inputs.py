"""What ``render3d data process`` is given: photo files, folders of photos and video files.

Every input becomes a list of :class:`CaptureImage` records in one working folder: photos
with their EXIF orientation applied (a photo that needs no turning is copied byte for
byte), under their own file names; video frames (see :mod:`.video_frames`) under
``<video stem>_<frame index>.jpg``, so names sort in time order. Each record carries the
camera group it belongs to: one group per video, and one per (size, camera make and model,
focal length) among photos, so photos of different sizes are different cameras.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from PIL import Image, ImageOps

from render3d.datasets.io import IMAGE_EXTENSIONS, first_line, is_dir, is_file
from render3d.errors import Render3DError

#: File extensions read as videos (compared lower-case).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")

_EXIF_IFD = 0x8769
_FOCAL_LENGTH_35MM = 0xA405
_ORIENTATION = 0x0112
_MAKE, _MODEL = 0x010F, 0x0110


@dataclass
class CaptureImage:
    """One image handed to structure from motion.

    Attributes:
        name: its file name in the working (and output) image folder.
        source: where it came from: the photo's path, or ``video.mp4#frame 12``.
        width, height: its size in pixels, after EXIF orientation.
        group: the camera it shares with the others of the same group.
        focal: the focal length in pixels from EXIF, or None (the mapper's default guess).
    """

    name: str
    source: str
    width: int
    height: int
    group: str
    focal: Optional[float] = None


def split_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """``(photos, videos)`` named by ``inputs``: files, or the image and video files directly inside folders.

    Raises a one-line Render3DError for a missing input, a file that is neither an image
    nor a video by its extension, or when nothing usable is found.
    """
    photos: list[Path] = []
    videos: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if is_dir(path):
            found = sorted(p for p in path.iterdir() if is_file(p) and not p.name.startswith("."))
            media = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS]
            if not media:
                raise Render3DError(f"{path} holds no photos or videos ({', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}); "
                                    "pass the folder that holds them")
        elif is_file(path):
            media = [path]
            if path.suffix.lower() not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
                raise Render3DError(f"{path} is neither a photo ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                                    f"({', '.join(VIDEO_EXTENSIONS)}); pass photos, videos or folders of them")
        else:
            raise Render3DError(f"input not found: {path}; check the path")
        photos += [p for p in media if p.suffix.lower() in IMAGE_EXTENSIONS]
        videos += [p for p in media if p.suffix.lower() in VIDEO_EXTENSIONS]
    return photos, videos


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """The photos' file names; where two share one, prefixed with as many of their folders as tell them apart."""
    names = [p.name for p in paths]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        names = ["_".join([*p.parent.parts[-depth:], p.name]).lstrip("/_") if p.name in clashes or n in clashes else n
                 for p, n in zip(paths, names)]
    return [f"{i:05d}_{p.name}" for i, p in enumerate(paths)] if len(set(names)) != len(names) else names


def exif_focal_pixels(image: Image.Image, width: int, height: int) -> Optional[float]:
    """Focal length in pixels from the EXIF 35 mm-equivalent focal length, or None.

    A 35 mm frame is 36 mm wide, so ``f_px = f35 / 36 * max(width, height)``. Values
    outside a plausible lens range (8-800 mm equivalent) are ignored.
    """
    try:
        f35 = image.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_LENGTH_35MM)
        f35 = float(f35) if f35 is not None else None
    except (TypeError, ValueError, OSError, KeyError):
        return None
    if f35 is None or not 8.0 <= f35 <= 800.0:
        return None
    return f35 / 36.0 * max(width, height)


def _camera_model_name(image: Image.Image) -> str:
    try:
        exif = image.getexif()
        return " ".join(str(exif.get(tag, "")).strip("\x00 ") for tag in (_MAKE, _MODEL)).strip()
    except (TypeError, ValueError, OSError):
        return ""


def copy_photo(path: Path, dest: Path) -> CaptureImage:
    """Write the photo ``path`` upright to ``dest`` and describe it.

    The file is decoded in full, so a truncated or corrupt photo is a one-line
    Render3DError naming it.
    """
    try:
        with Image.open(path) as image:
            image.load()
            orientation = image.getexif().get(_ORIENTATION, 1)
            upright = ImageOps.exif_transpose(image) if orientation not in (None, 1) else image
            width, height = upright.size
            focal = exif_focal_pixels(image, width, height)
            group = f"{width}x{height} {_camera_model_name(image)} f{focal or 0:.0f}"
            if upright is image:
                shutil.copyfile(path, dest)
            else:
                kept = {"quality": 95} if dest.suffix.lower() in (".jpg", ".jpeg") else {}
                upright.convert("RGB").save(dest, **kept)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise Render3DError(f"cannot read photo {path} ({first_line(exc)}); remove it or export it again") from None
    if min(width, height) < 16:
        raise Render3DError(f"photo {path} is only {width}x{height} pixels; structure from motion needs real photos: remove it")
    return CaptureImage(name=dest.name, source=str(path), width=width, height=height, group=group, focal=focal)


def copy_photos(paths: Sequence[Path], folder: Path, tick: Callable[[], None] = lambda: None) -> list[CaptureImage]:
    """:func:`copy_photo` for each of ``paths`` into ``folder``, under unique names (in order); ``tick`` after each."""
    images = []
    for path, name in zip(paths, _unique_names(paths)):
        images.append(copy_photo(path, folder / name))
        tick()
    return images
