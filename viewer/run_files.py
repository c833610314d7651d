"""Files a browser may name: plain names inside a folder of the run folder.

The viewer is a web page; whoever can reach it may type anything into its text boxes. So
a name typed in the browser never becomes a path by itself: it must be a plain file name
(letters, digits, ``-``, ``_`` and ``.``, no leading dot), it gets a fixed suffix, and it
lives in one folder of the run folder (``RUN/paths/NAME.json``, ``RUN/videos/NAME.mp4``).
"""

from __future__ import annotations

import re
from pathlib import Path

from render3d.errors import Render3DError

MAX_NAME_LENGTH = 64
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def plain_name(text: str, suffix: str) -> str:
    """``text`` as a file name ending in ``suffix`` (added when missing).

    Raises:
        Render3DError: ``text`` is empty, too long, or not a plain name (a separator,
            ``..``, an absolute path, a leading dot, any other character).
    """
    name = text.strip()
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    if not name:
        raise Render3DError("type a name first")
    if len(name) > MAX_NAME_LENGTH or not _PLAIN_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:39] + "…"
        raise Render3DError(
            f"{shown!r} is not a plain file name: use up to {MAX_NAME_LENGTH} letters, digits, '-', '_' or '.' "
            "(no folders, no leading dot)"
        )
    return name + suffix


def run_file(run_dir: Path, folder: str, name: str, suffix: str) -> Path:
    """``run_dir/folder/<name><suffix>`` for a ``name`` typed in a browser.

    Raises:
        Render3DError: ``name`` is not a plain name (see :func:`plain_name`), or the file
            is a link that leads out of ``run_dir/folder``.
    """
    base = Path(run_dir) / folder
    file = base / plain_name(name, suffix)
    if file.resolve().parent != base.resolve():
        raise Render3DError(f"{folder}/{file.name} leads out of the run folder's {folder}/ (a link?)")
    return file


def shown_path(file: Path, run_dir: Path) -> str:
    """``file`` as the panels show it: relative to the run folder (browsers need not see server paths)."""
    try:
        return str(Path(file).relative_to(run_dir))
    except ValueError:
        return Path(file).name
