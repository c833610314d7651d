"""Writing outputs safely: every file appears whole or not at all.

Each writer writes a temporary file in the destination folder, flushes it to disk
(``fsync``) and renames it over the destination with ``os.replace``, which is atomic on
POSIX and Windows. A crash, ``kill -9`` or a full disk therefore leaves either the old
file or the new one, never half of one; the temporary file is removed on failure, and a
full disk (or a read-only folder) becomes one :class:`Render3DError` line.

    with atomic_path(out) as tmp:        # write anything to ``tmp`` (a sibling of ``out``)
        some_library.save(tmp)
    write_bytes_atomic(out, data)        # or the helpers below
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from render3d.errors import Render3DError

PathLike = Union[str, os.PathLike]

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def fsync_file(path: PathLike) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_error(path: Path, exc: OSError) -> Render3DError:
    """The one-line error for an ``OSError`` met while writing ``path``."""
    if exc.errno in _SPACE_ERRNOS:
        return Render3DError(f"cannot write {path}: the disk is full; free some space and run again (nothing was overwritten)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Render3DError(f"cannot write {path}: permission denied; choose another output with --out")
    return Render3DError(f"cannot write {path} ({exc.strerror or exc}); choose another output with --out")


class PendingFile:
    """A temporary file next to ``path`` that becomes ``path`` on :meth:`commit` (or vanishes on :meth:`discard`).

    For writers that stream over time (videos); :func:`atomic_path` wraps it for the rest.
    The temporary name keeps ``path``'s extension, so writers that choose a format by
    extension (ffmpeg, imageio, trimesh) behave the same.
    """

    def __init__(self, path: PathLike) -> None:
        self.target = Path(path)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.target.stem}.", suffix=f".part{self.target.suffix}", dir=self.target.parent)
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make outputs private to their writer
            os.close(fd)
        except OSError as exc:
            raise output_error(self.target, exc) from None
        self.path = Path(name)

    def commit(self) -> Path:
        """fsync the temporary file and rename it onto the target."""
        try:
            fsync_file(self.path)
            os.replace(self.path, self.target)
        except OSError as exc:
            self.discard()
            raise output_error(self.target, exc) from None
        _fsync_dir(self.target.parent)
        return self.target

    def discard(self) -> None:
        """Remove the temporary file; the target is untouched."""
        self.path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    Parent folders are created. On any error the temporary file is removed and ``path`` is
    untouched; ``OSError`` becomes a one-line :class:`Render3DError`.
    """
    pending = PendingFile(path)
    try:
        yield pending.path
    except OSError as exc:
        pending.discard()
        raise output_error(pending.target, exc) from None
    except BaseException:
        pending.discard()
        raise
    pending.commit()


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(data: Any, path: PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (values JSON does not know become strings)."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
