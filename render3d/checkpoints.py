"""Checkpoint files: written atomically, read weights-only.

A checkpoint is data, never code: :func:`load_weights` reads with
``torch.load(weights_only=True)``, which unpickles only tensors and plain Python values
(dicts, lists, strings, numbers), so a file crafted to run a command on load is refused
with one line instead of executed. Everything render3d writes is made of those types.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Container, Iterator, Union

import torch

from render3d.errors import Render3DError
from render3d.files import atomic_path

PathLike = Union[str, os.PathLike]


def save_weights(obj: Any, path: PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temporary file, fsync, rename).

    torch writes through a Python file object here, so a full disk surfaces as the ``OSError``
    behind torch's ``RuntimeError`` and becomes :func:`render3d.files.atomic_path`'s one line.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise
    return Path(path)


def load_weights(path: PathLike, what: str = "checkpoint") -> Any:
    """Read a ``torch.save`` file weights-only, with one-line errors.

    Raises:
        Render3DError: the file is missing, damaged, or holds Python objects that only code
            could rebuild (a pickle that would run on load is never run).
    """
    file = Path(path)
    if not file.is_file():
        raise Render3DError(f"no {what} at {file}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported" in str(exc) or "global" in str(exc):
            raise Render3DError(
                f"refusing to load {file}: it holds Python objects that only code could rebuild, and render3d loads "
                f"{what}s weights-only (a file like this can run commands); use a {what} render3d wrote itself"
            ) from None
        raise Render3DError(f"cannot read {what} {file} (UnpicklingError): it is damaged; use an earlier one or retrain") from None
    except Exception as exc:  # truncated or corrupt file
        raise Render3DError(f"cannot read {what} {file} ({type(exc).__name__}): it is damaged; use an earlier one or retrain") from None


def load_tagged(file: PathLike, kinds: Container[str], version: int, what: str) -> dict:
    """A weights-only file holding a dict whose ``kind`` is one of ``kinds`` at ``version``, else a one-line error."""
    data = load_weights(file, what=what)
    if not isinstance(data, dict) or data.get("kind") not in kinds or data.get("version") != version:
        raise Render3DError(f"{file} is not a render3d {what} (version {version})")
    return data


def require_keys(data: Any, keys: tuple[str, ...], file: PathLike, what: str = "checkpoint") -> dict:
    """``data`` as a dict holding every one of ``keys``, else a one-line error naming the first missing one."""
    if not isinstance(data, dict):
        raise Render3DError(f"{file} is not a render3d {what}")
    for key in keys:
        if key not in data:
            raise Render3DError(f"{what} {file} has no {key!r} entry: it is incomplete or from another program; use another one or retrain")
    return data


@contextmanager
def reading_contents(file: PathLike, what: str = "checkpoint") -> Iterator[None]:
    """Turn what a checkpoint with missing or mangled entries raises while it is rebuilt into a model
    (``KeyError``, ``TypeError``, torch's ``load_state_dict`` errors, ...) into one line naming the file."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "state_dict" not in str(exc):  # not about the file's contents
            raise
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise Render3DError(f"{what} {file} is incomplete or damaged ({type(exc).__name__}: {detail}): "
                            f"use another one or retrain") from None
