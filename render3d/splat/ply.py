"""Gaussians on disk: the reference 3DGS PLY layout and the compact web ``.splat`` format.

PLY (what the reference trainer writes and every splat viewer reads)::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3*(K-1)-1) opacity scale_0..2 rot_0..3

binary little-endian float32, raw (unactivated) values: log-scales, opacity logits and
(w, x, y, z) quaternions. ``f_rest`` is channel-major: all red coefficients of bands 1..,
then green, then blue; the SH degree follows from its count (0, 9, 24 or 45).

``.splat`` (antimatter15's web viewer): 32 bytes per Gaussian, position ``3 x f32``, linear
scale ``3 x f32``, RGBA ``4 x u8`` (colour from the SH DC term, alpha = opacity) and the
quaternion ``4 x u8`` as ``q * 128 + 128`` (w, x, y, z), sorted by size x opacity, largest first.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from render3d.errors import Render3DError
from render3d.files import write_bytes_atomic
from render3d.protocol import Gaussians, HasGaussians
from render3d.splat.model import GaussianSplats
from render3d.splat.sh import C0, num_sh_bases

PathLike = Union[str, os.PathLike]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


# --------------------------------------------------------------------------- PLY


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names of the reference layout for ``sh_degree``."""
    rest = 3 * (num_sh_bases(sh_degree) - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _ply_columns(gaussians: Gaussians) -> dict[str, np.ndarray]:
    """Each reference property as a float32 ``[N]`` or ``[N, k]`` column, in file order."""
    g = gaussians
    n = len(g)
    sh = g.sh.detach().cpu().float().numpy()
    rest = sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)  # [N, K-1, 3] -> channel-major [N, 3*(K-1)]
    as_numpy = lambda t: t.detach().cpu().float().numpy()  # noqa: E731
    return {
        "xyz": as_numpy(g.means),
        "normal": np.zeros((n, 3), np.float32),
        "f_dc": sh[:, 0].reshape(n, 3),
        "f_rest": rest,
        "opacity": as_numpy(g.opacity_logits).reshape(n, 1),
        "scale": as_numpy(g.log_scales),
        "rot": as_numpy(g.quats),
    }


def save_ply(model: HasGaussians, path: PathLike) -> Path:
    """Write ``model``'s Gaussians in the reference 3DGS PLY layout (binary little-endian float32), atomically."""
    path = Path(path)
    gaussians = model.gaussians()
    columns = _ply_columns(gaussians)
    names = ply_property_names(gaussians.sh_degree)
    data = np.concatenate(list(columns.values()), axis=1).astype("<f4")
    records = np.empty(len(data), dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        records[name] = data[:, i]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(records)}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    return write_bytes_atomic(path, ("\n".join(header) + "\n").encode("ascii") + records.tobytes())


def _read_ply_vertices(path: Path) -> np.ndarray:
    """The vertex element of a binary little-endian PLY as a structured array."""
    if not path.is_file():
        raise Render3DError(f"no PLY file at {path}")
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise Render3DError(f"{path} is not a PLY file (no 'ply' magic line)")
        fmt, count, fields, element = None, None, [], None
        while True:
            line = f.readline()
            if not line:
                raise Render3DError(f"{path}: the PLY header has no end_header line")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                element = words[1]
                if element == "vertex":
                    count = int(words[2])
                elif count is None:  # elements after the vertices are ignored
                    raise Render3DError(f"{path}: element {element!r} before the vertices is not supported")
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list" or words[1] not in _PLY_TYPES:
                    raise Render3DError(f"{path}: unsupported vertex property {' '.join(words[1:])!r}")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        if fmt != "binary_little_endian":
            raise Render3DError(f"{path}: PLY format {fmt!r} is not supported; Gaussian PLYs are binary_little_endian")
        if count is None:
            raise Render3DError(f"{path}: the PLY has no vertex element")
        dtype = np.dtype(fields)
        raw = f.read(count * dtype.itemsize)
    if len(raw) < count * dtype.itemsize:
        raise Render3DError(f"{path} is truncated: expected {count} vertices of {dtype.itemsize} bytes")
    return np.frombuffer(raw, dtype=dtype, count=count)


def _stack(vertices: np.ndarray, names: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.stack([vertices[n].astype(np.float32) for n in names], axis=1))


def load_ply(path: PathLike, backend: str = "torch") -> GaussianSplats:
    """Read a reference-layout Gaussian PLY (any SH degree 0-3) into :class:`GaussianSplats`."""
    path = Path(path)
    v = _read_ply_vertices(path)
    names = set(v.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [n for n in required if n not in names]
    if missing:
        raise Render3DError(f"{path} is not a Gaussian-splat PLY: missing properties {', '.join(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    k = n_rest // 3 + 1
    degree = round(math.sqrt(k)) - 1
    if n_rest % 3 or num_sh_bases(degree) != k or not 0 <= degree <= 3:
        raise Render3DError(f"{path}: {n_rest} f_rest properties do not match an SH degree 0-3 (0, 9, 24 or 45)")
    n = len(v)
    rest = _stack(v, [f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).transpose(1, 2).contiguous()
    params = nn.ParameterDict(
        {
            "means": nn.Parameter(_stack(v, ["x", "y", "z"])),
            "scales": nn.Parameter(_stack(v, [f"scale_{i}" for i in range(3)])),
            "quats": nn.Parameter(_stack(v, [f"rot_{i}" for i in range(4)])),
            "opacities": nn.Parameter(torch.from_numpy(v["opacity"].astype(np.float32))),
            "sh0": nn.Parameter(_stack(v, ["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :].contiguous()),
            "shN": nn.Parameter(rest),
        }
    )
    return GaussianSplats(params, degree, backend)


# --------------------------------------------------------------------------- .splat


def save_splat(model: HasGaussians, path: PathLike) -> Path:
    """Write the 32-byte-per-Gaussian ``.splat`` format (colour from the DC term only), atomically."""
    g = model.gaussians()
    scales = torch.exp(g.log_scales.detach().cpu().float())
    opacity = g.opacities().detach().cpu().float()
    order = torch.argsort(-(scales.sum(-1) * opacity), stable=True)
    rgba = torch.cat([g.rgb().detach().cpu().float(), opacity[:, None]], dim=1)
    quats = g.quats.detach().cpu().float()
    quats = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    records = np.empty(len(order), dtype=SPLAT_DTYPE)
    records["position"] = g.means.detach().cpu().float()[order].numpy()
    records["scale"] = scales[order].numpy()
    records["rgba"] = (rgba[order] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    records["rot"] = (quats[order] * 128.0 + 128.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return write_bytes_atomic(path, records.tobytes())


def load_splat(path: PathLike, backend: str = "torch") -> GaussianSplats:
    """Read a ``.splat`` file (SH degree 0; values quantised as the format stores them)."""
    path = Path(path)
    if not path.is_file():
        raise Render3DError(f"no .splat file at {path}")
    raw = path.read_bytes()
    if len(raw) % SPLAT_DTYPE.itemsize:
        raise Render3DError(f"{path} is not a .splat file: its size is not a multiple of {SPLAT_DTYPE.itemsize} bytes")
    records = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    rgba = torch.from_numpy(records["rgba"].astype(np.float32)) / 255.0
    quats = (torch.from_numpy(records["rot"].astype(np.float32)) - 128.0) / 128.0
    quats = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    eps = 0.5 / 255.0
    n = len(records)
    params = nn.ParameterDict(
        {
            "means": nn.Parameter(torch.from_numpy(records["position"].copy())),
            "scales": nn.Parameter(torch.log(torch.from_numpy(records["scale"].copy()).clamp_min(1e-12))),
            "quats": nn.Parameter(quats),
            "opacities": nn.Parameter(torch.logit(rgba[:, 3].clamp(eps, 1 - eps))),
            "sh0": nn.Parameter(((rgba[:, :3] - 0.5) / C0)[:, None, :].contiguous()),
            "shN": nn.Parameter(torch.zeros(n, 0, 3)),
        }
    )
    return GaussianSplats(params, 0, backend)
