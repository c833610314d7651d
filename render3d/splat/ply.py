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

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from render3d.cameras import Cameras
from render3d.datasets.io import is_file
from render3d.datasets.ply import read_ply_vertices, reading
from render3d.errors import Render3DError
from render3d.files import write_bytes_atomic
from render3d.protocol import Gaussians, HasGaussians
from render3d.splat.model import GaussianSplats
from render3d.splat.sh import C0, num_sh_bases

PathLike = Union[str, os.PathLike]

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


def for_classic_renderers(model: HasGaussians, cameras: Optional[Cameras]) -> HasGaussians:
    """``model`` as files store it: a model trained ``--splat.antialiased`` with its opacity factor at ``cameras``
    baked in (:mod:`render3d.splat.baking`), anything else as it is."""
    from render3d.splat.baking import baked_for_classic_renderers

    return baked_for_classic_renderers(model, cameras) if isinstance(model, GaussianSplats) else model


def save_ply(model: HasGaussians, path: PathLike, cameras: Optional[Cameras] = None) -> Path:
    """Write ``model``'s Gaussians in the reference 3DGS PLY layout (binary little-endian float32), atomically.

    A model trained in the antialiased mode is written with its opacity factor at ``cameras`` (the training cameras;
    without them, views around the content) baked in, since the layout has no such mode.
    """
    path = Path(path)
    gaussians = for_classic_renderers(model, cameras).gaussians()
    columns = _ply_columns(gaussians)
    names = ply_property_names(gaussians.sh_degree)
    data = np.concatenate(list(columns.values()), axis=1).astype("<f4")
    records = np.empty(len(data), dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        records[name] = data[:, i]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(records)}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    return write_bytes_atomic(path, ("\n".join(header) + "\n").encode("ascii") + records.tobytes())


_F_REST_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}  # number of f_rest properties -> SH degree


def _finite_rows(values: np.ndarray, path: Path) -> np.ndarray:
    """Mask of the rows of ``values [N, C]`` to keep: the finite ones.

    A file with no rows, or no finite row, is a one-line Render3DError; dropping some rows
    gives one one-line warning that counts them.
    """
    if len(values) == 0:
        raise Render3DError(f"{path} holds no Gaussians; export the scene again")
    finite = np.isfinite(values).all(axis=1)
    if not finite.any():
        raise Render3DError(f"{path}: every Gaussian has a NaN or infinite value; the file is corrupt or from a diverged run: re-export it")
    if not finite.all():
        warnings.warn(
            f"{path}: dropped {int((~finite).sum())} of {len(values)} Gaussians with NaN or infinite values", stacklevel=3
        )
    return finite


def load_ply(path: PathLike, backend: str = "torch") -> GaussianSplats:
    """Read a reference-layout Gaussian PLY (any SH degree 0-3) into :class:`GaussianSplats`.

    Gaussians holding a NaN or infinite value are dropped with one warning; a file with
    none left, or any malformed file, is a one-line :class:`Render3DError`.
    """
    path = Path(path)
    v = read_ply_vertices(path)
    names = set(v.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [n for n in required if n not in names]
    if missing:
        raise Render3DError(f"{path} is not a Gaussian-splat PLY: missing properties {', '.join(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    rest_names = [f"f_rest_{i}" for i in range(n_rest)]
    if n_rest not in _F_REST_DEGREE:
        raise Render3DError(f"{path}: {n_rest} f_rest properties do not match an SH degree 0-3 (0, 9, 24 or 45)")
    if not names.issuperset(rest_names):
        raise Render3DError(f"{path}: the f_rest properties must be numbered f_rest_0 to f_rest_{n_rest - 1}; re-export the file")
    degree = _F_REST_DEGREE[n_rest]
    columns = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", *rest_names, "opacity"] + required[7:]
    with np.errstate(over="ignore"):  # float64 values beyond float32 become inf, and are dropped below
        values = np.stack([v[name].astype(np.float32) for name in columns], axis=1)
    values = torch.from_numpy(values[_finite_rows(values, path)])
    n, k = len(values), n_rest // 3 + 1
    means, sh0, rest, opacity, scales, quats = values.split([3, 3, n_rest, 1, 3, 4], dim=1)
    params = nn.ParameterDict(
        {
            "means": nn.Parameter(means.contiguous()),
            "scales": nn.Parameter(scales.contiguous()),
            "quats": nn.Parameter(quats.contiguous()),
            "opacities": nn.Parameter(opacity[:, 0].contiguous()),
            "sh0": nn.Parameter(sh0[:, None, :].contiguous()),
            "shN": nn.Parameter(rest.reshape(n, 3, k - 1).transpose(1, 2).contiguous()),
        }
    )
    return GaussianSplats(params, degree, backend)


# --------------------------------------------------------------------------- .splat


def save_splat(model: HasGaussians, path: PathLike, cameras: Optional[Cameras] = None) -> Path:
    """Write the 32-byte-per-Gaussian ``.splat`` format (colour from the DC term only), atomically (an antialiased
    model baked as :func:`save_ply` does)."""
    g = for_classic_renderers(model, cameras).gaussians()
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
    """Read a ``.splat`` file (SH degree 0; values quantised as the format stores them).

    Gaussians with a NaN or infinite position or scale are dropped with one warning; an
    empty file, one with none left, or a size that is not whole records is a one-line
    :class:`Render3DError`.
    """
    path = Path(path)
    if not is_file(path):
        raise Render3DError(f"no .splat file at {path}")
    with reading(path):
        raw = path.read_bytes()
    if len(raw) % SPLAT_DTYPE.itemsize:
        raise Render3DError(f"{path} is not a .splat file: its size is not a multiple of {SPLAT_DTYPE.itemsize} bytes")
    records = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    records = records[_finite_rows(np.concatenate([records["position"], records["scale"]], axis=1), path)]
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
