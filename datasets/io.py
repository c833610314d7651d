"""File reading shared by every loader: folders, json, images, depth maps and masks.

Everything the user can get wrong (a missing folder, a missing or corrupt file) raises
:class:`~render3d.errors.Render3DError` with one line that names the file and says what
to do. Images come back as ``uint8`` numpy arrays ``[H, W, 3]`` or ``[H, W, 4]``.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
import tokenize
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from render3d.errors import Render3DError

#: File extensions treated as images when a folder is listed (compared lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: What Pillow raises for a file that is not a readable image (corrupt, truncated, or a
#: header claiming a "decompression bomb" size).
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


#: What numpy raises for a corrupt ``.npy`` file (its header is parsed with ``ast`` / ``tokenize``).
_NPY_ERRORS = (OSError, ValueError, EOFError, SyntaxError, TypeError, tokenize.TokenError)
#: ``np.load`` parses the header with ``ast.literal_eval``; on CPython 3.11 two threads doing
#: that at once can fail with "SystemError: AST constructor recursion depth mismatch"
#: (python/cpython#106905), and loaders read frames in threads: one header at a time.
_NPY_HEADER_LOCK = threading.Lock()


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def printable(path: Path | str) -> str:
    """``path`` as text for a one-line message: quoted with its control characters escaped when it has any."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def is_file(path: Path) -> bool:
    """``path.is_file()``, but False rather than an OSError for a path the system refuses (a name too long...)."""
    try:
        return path.is_file()
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, but False rather than an OSError for a path the system refuses."""
    try:
        return path.is_dir()
    except OSError:
        return False


def require_dir(path: Path | str, what: str = "scene folder") -> Path:
    """``path`` as a ``Path`` if it is a folder, else a Render3DError naming it."""
    path = Path(path).expanduser()
    if not is_dir(path):
        if is_file(path):
            raise Render3DError(f"{path} is a file, not a folder; pass the {what}")
        raise Render3DError(f"{what} not found: {path}; check the path")
    return path


def require_file(path: Path, source: str | Path | None = None, what: str = "file") -> Path:
    """``path`` if it is a file, else a Render3DError naming it (and the file that lists it)."""
    if not is_file(path):
        if source:
            raise Render3DError(f"{what} not found: {path} (listed in {source}); restore the file or remove it from that list")
        raise Render3DError(f"{what} not found: {path}; check the path")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """Parse a json file, with a one-line Render3DError when it is missing or invalid."""
    require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise Render3DError(f"cannot read {path} ({e.strerror or e}); check the file and its permissions") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, a too-long integer, deep nesting
        raise Render3DError(f"{path} is not valid json ({first_line(e)}); fix or regenerate it") from None
    if not isinstance(data, dict):
        raise Render3DError(f"{path} should hold a json object (with a 'frames' list); fix or regenerate it")
    return data


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def find_image_folder(root: Path, downscale: int, base: str = "images") -> tuple[Path, int]:
    """The image folder to read for ``downscale`` and the factor still to apply.

    ``root/images_N`` (already ``N`` times smaller) is used when it exists, with factor 1;
    otherwise ``root/images`` with factor ``N``. With ``downscale`` 1 and no ``images/``, the
    least downscaled ``images_N/`` is used, with one warning. Otherwise raises when neither
    exists, listing the folders that do.
    """
    if downscale > 1:
        shrunk = root / f"{base}_{downscale}"
        if shrunk.is_dir():
            return shrunk, 1
    full = root / base
    if full.is_dir():
        return full, downscale
    found = sorted(p.name for p in root.glob(f"{base}*") if p.is_dir() and re.fullmatch(rf"{base}(_\d+)?", p.name))
    if found and downscale == 1:  # only downscaled copies (LLFF scenes as distributed): the largest of them
        factor = min(int(name.rsplit("_", 1)[1]) for name in found)
        warnings.warn(f"{root} has no {base}/ folder; using {base}_{factor}/ (as --downscale {factor} would)", stacklevel=2)
        return root / f"{base}_{factor}", 1
    if found:
        factors = ", ".join("1" if n == base else n.rsplit("_", 1)[1] for n in found)
        wanted = f"{base}_{downscale}/ or {base}/" if downscale > 1 else f"{base}/"
        raise Render3DError(f"no {wanted} folder in {root}; pass a downscale factor it has ({factors})")
    raise Render3DError(f"no {base}/ folder in {root}; put the photos in {root / base}")


def downscaled_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """Image size after shrinking by ``factor`` (rounded, at least 1 pixel)."""
    if factor <= 1:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


def image_size(path: Path, source: str | Path | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header."""
    require_file(path, source, "image")
    try:
        with Image.open(path) as im:
            return im.size
    except _IMAGE_ERRORS as e:
        raise _corrupt(path, source, e) from None


def read_image(path: Path, source: str | Path | None = None) -> np.ndarray:
    """Read an image as ``uint8 [H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA).

    Greyscale becomes RGB, palette images keep their transparency as alpha, and 16-bit
    images are reduced to 8 bits.
    """
    require_file(path, source, "image")
    try:
        with Image.open(path) as im:
            im.load()
            return _to_uint8_rgb(im)
    except _IMAGE_ERRORS as e:
        raise _corrupt(path, source, e) from None


def _to_uint8_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGB", "RGBA"):
        return np.asarray(im).copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = im.mode in ("LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info)
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB")).copy()


def _corrupt(path: Path, source: str | Path | None, err: Exception) -> Render3DError:
    listed = f" listed in {source}" if source else ""
    return Render3DError(
        f"cannot read image {path}{listed} ({first_line(err)}); the file is corrupt or not an image: replace or remove it"
    )


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 [H, W, C]`` image to ``size = (width, height)`` with antialiasing.

    Uses Lanczos filtering; RGBA is resized with premultiplied alpha (Pillow does this),
    so transparent pixels do not bleed their colour into the edges.
    """
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    mode = "RGBA" if image.shape[-1] == 4 else "RGB"
    resized = Image.fromarray(image, mode).resize(tuple(size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized).copy()


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D array (depth, mask) to ``size = (width, height)`` by nearest neighbour."""
    if (array.shape[1], array.shape[0]) == tuple(size):
        return array
    height, width = array.shape
    ys = np.minimum(((np.arange(size[1]) + 0.5) * height / size[1]).astype(np.int64), height - 1)
    xs = np.minimum(((np.arange(size[0]) + 0.5) * width / size[0]).astype(np.int64), width - 1)
    return array[ys[:, None], xs[None, :]]


def composite(image: np.ndarray, background: Sequence[float]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Split an image into ``uint8`` RGB composited on ``background`` and its alpha.

    Returns ``(rgb [H, W, 3], alpha [H, W, 1] or None)``; alpha is None for RGB input.
    """
    if image.shape[-1] == 3:
        return image, None
    alpha = image[..., 3:4]
    a = alpha.astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3) * 255.0
    rgb = image[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8), alpha.copy()


def read_npy(path: Path, what: str, fix: str, source: str | Path | None = None) -> np.ndarray:
    """A real-valued array (integers, floats or booleans) from a ``.npy`` file.

    Never unpickles, and never allocates more than the file holds (the array is memory
    mapped, so a header claiming a huge shape fails at once). Anything else is a one-line
    Render3DError naming the file (and the file that lists it), ending with ``fix``.
    """
    require_file(path, source, what)
    listed = f" listed in {source}" if source else ""
    try:
        with _NPY_HEADER_LOCK:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(mapped, np.ndarray):  # an .npz archive under a .npy name
            mapped.close()
            raise ValueError("it is an .npz archive, not one array")
        array = np.array(mapped)
        del mapped
    except _NPY_ERRORS as e:
        pickled = "pickle" in str(e) or "Python objects" in str(e)  # numpy's own message suggests unpickling: don't
        reason = "not a .npy array of numbers; render3d never unpickles files" if pickled else first_line(e)
        raise Render3DError(f"cannot read {what} {path}{listed} ({reason}); {fix}") from None
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise Render3DError(f"{what} {path}{listed} holds {array.dtype} values, not real numbers; {fix}")
    return array


def read_depth(path: Path, scale: float = 1.0, source: str | Path | None = None) -> np.ndarray:
    """Read a depth map as ``float32 [H, W]`` z-depth: ``depth = stored value / scale``.

    ``.npy`` files hold any real-valued array ``[H, W]`` (or ``[H, W, 1]``); image files (16-bit
    PNG) hold integers. Zero means "no depth" (background). Non-finite values become 0.
    """
    require_file(path, source, "depth map")
    if path.suffix.lower() == ".npy":
        raw = read_npy(path, "depth map", "replace or remove it", source)
    else:
        try:
            with Image.open(path) as im:
                raw = np.asarray(im)
        except _IMAGE_ERRORS as e:
            listed = f" listed in {source}" if source else ""
            raise Render3DError(f"cannot read depth map {path}{listed} ({first_line(e)}); replace or remove it") from None
    raw = np.squeeze(np.asarray(raw))
    if raw.ndim != 2:
        raise Render3DError(f"depth map {path} has shape {raw.shape}, expected [H, W]; write one z-depth value per pixel")
    with np.errstate(over="ignore", invalid="ignore"):
        depth = raw.astype(np.float64) / float(scale)
    depth[~np.isfinite(depth)] = 0.0
    return depth.astype(np.float32)


def read_mask(path: Path, source: str | Path | None = None) -> np.ndarray:
    """Read a mask image as ``bool [H, W]``: True where the grey value (and alpha, if any) is above half."""
    require_file(path, source, "mask")
    try:
        with Image.open(path) as im:
            im.load()
            values = np.asarray(im.convert("L"))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                values = np.minimum(values, np.asarray(im.convert("RGBA"))[..., 3])
    except _IMAGE_ERRORS as e:
        listed = f" listed in {source}" if source else ""
        raise Render3DError(f"cannot read mask {path}{listed} ({first_line(e)}); replace or remove it") from None
    return values > 127
