"""Reading the vertex element of a binary little-endian PLY file, safely.

Shared by the Gaussian-splat PLY reader (:mod:`render3d.splat.ply`) and the sparse point
clouds of nerfstudio folders (``ply_file_path``). Every malformed file is a one-line
:class:`~render3d.errors.Render3DError`; nothing is read past what the header promises
and the file holds.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from render3d.errors import Render3DError

from .checks import describe
from .io import is_file

#: PLY scalar type names -> numpy dtypes (little-endian).
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}

#: Longest PLY header read; a file without ``end_header`` within it is refused.
_MAX_HEADER_BYTES = 1 << 20


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn an OSError while reading ``path`` (permissions, I/O) into a one-line Render3DError."""
    try:
        yield
    except OSError as e:
        raise Render3DError(f"cannot read {path} ({e.strerror or e}); check the file and its permissions") from None


def read_ply_header(f: BinaryIO, path: Path) -> tuple[int, list[tuple[str, str]]]:
    """``(vertex count, [(property, dtype)])`` from a PLY header, read after its ``ply`` line."""
    fmt, count, fields, element = None, None, [], None
    seen = 0
    while True:
        line = f.readline(_MAX_HEADER_BYTES)
        seen += len(line)
        if not line or seen > _MAX_HEADER_BYTES:
            raise Render3DError(f"{path}: the PLY header has no end_header line; the file is truncated or not a PLY")
        words = line.decode("ascii", "replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        needed = {"format": 2, "element": 3, "property": 3}.get(words[0], 0)
        if len(words) < needed:
            raise Render3DError(f"{path}: malformed PLY header line {describe(line.decode('ascii', 'replace').strip())}; re-export the file")
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                if count is not None:
                    raise Render3DError(f"{path}: the PLY header has two vertex elements; re-export the file")
                count = _vertex_count(words[2], path)
            elif count is None:  # elements after the vertices are ignored
                raise Render3DError(f"{path}: element {element!r} before the vertices is not supported")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in PLY_TYPES:
                raise Render3DError(f"{path}: unsupported vertex property {' '.join(words[1:])!r}")
            if any(name == words[2] for name, _ in fields):
                raise Render3DError(f"{path}: the vertex element lists property {words[2]!r} twice; re-export the file")
            fields.append((words[2], PLY_TYPES[words[1]]))
    if fmt != "binary_little_endian":
        raise Render3DError(f"{path}: PLY format {fmt!r} is not supported; write it as binary_little_endian")
    if count is None:
        raise Render3DError(f"{path}: the PLY has no vertex element")
    if not fields:
        raise Render3DError(f"{path}: the vertex element has no properties; re-export the file")
    return count, fields


def _vertex_count(word: str, path: Path) -> int:
    if not (word.isascii() and word.isdigit()) or len(word) > 4000:  # int() refuses longer digit strings
        raise Render3DError(f"{path}: vertex count {describe(word)} is not a whole number >= 0; fix the 'element vertex' line")
    return int(word)


def read_ply_vertices(path: Path) -> np.ndarray:
    """The vertex element of a binary little-endian PLY as a structured array.

    The vertex count is checked against the file size before anything is read, so a
    corrupt header can neither allocate nor read more than the file holds.
    """
    if not is_file(path):
        raise Render3DError(f"no PLY file at {path}")
    with reading(path), open(path, "rb") as f:
        if f.readline(16).strip() != b"ply":
            raise Render3DError(f"{path} is not a PLY file (no 'ply' magic line)")
        count, fields = read_ply_header(f, path)
        dtype = np.dtype(fields)
        available = os.fstat(f.fileno()).st_size - f.tell()
        if count * dtype.itemsize > available:
            raise Render3DError(
                f"{path} is truncated: its header promises {count} vertices of {dtype.itemsize} bytes "
                f"but only {available} bytes follow; re-export it"
            )
        raw = f.read(count * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype, count=count)
