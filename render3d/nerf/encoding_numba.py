"""Instant-NGP's multiresolution hash encoding compiled for the CPU with numba (forward and backward).

Drop-in for the torch path of :class:`render3d.nerf.encoding.HashEncoding` (same corners,
same hash, same trilinear weights, all in float32), which picks it for float32 CPU tensors
(see :mod:`render3d.cpu_kernels`). The torch path builds ``[8, levels, points]`` index and
weight tensors and gathers from them; here each (point, level) computes its 8 corners in
registers:

- **Forward** (:func:`_forward`, ``prange`` over levels): ``out[p, l*F + f] = sum_c w_c
  table[row_c, f]`` over the cell's 8 corners ``c = 4z + 2y + x``.
- **Backward** (:func:`_backward`, ``prange`` over levels): the corners and weights are
  computed again (cheaper than storing them) and ``w_c * grad[p, l*F + f]`` is added to row
  ``row_c`` of the table's gradient. Levels own disjoint rows of the table, so threads that
  take different levels never write the same row: no atomics, and the sums come out in the
  same order whatever the thread count (bit for bit the same run to run).
- **Points' gradient** (:func:`_backward_points`, ``prange`` over blocks of points; only when the
  points require it, as they do when camera poses are learned): ``dL/dx`` sums, over levels and
  corners, ``(grad · table[row_c]) · dw_c/dx``, where ``dw_c/dx = ±res · w_y w_z`` (and alike for
  ``y`` and ``z``). Each thread writes its own points' rows.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from render3d.cpu_kernels import launch, njit

_ONE = np.float32(1.0)


@njit(inline=True)
def _cell(res, coord):
    """Lower corner index and fraction of one coordinate in [0, 1] on a grid of resolution ``res``."""
    scaled = res * coord
    cell = math.floor(scaled)
    return np.int64(cell), scaled - np.float32(cell)


@njit(inline=True)
def _corners(x, y, z, res, size, offset, dense, rows, weights):
    """Table rows and trilinear weights ``[8]`` of the corners of the cell holding point ``(x, y, z)``.

    ``res`` is the level's grid resolution (float32), ``size`` its table size, ``dense`` whether
    the level is indexed directly (``(res + 1)^3 <= size``) or hashed. Corner ``c = 4z + 2y + x``.
    """
    lx, fx = _cell(res, x)
    ly, fy = _cell(res, y)
    lz, fz = _cell(res, z)
    stride = np.int64(res) + 1
    for c in range(8):
        dx, dy, dz = c & 1, (c >> 1) & 1, (c >> 2) & 1
        wx = fx if dx else _ONE - fx
        wy = fy if dy else _ONE - fy
        wz = fz if dz else _ONE - fz
        weights[c] = (wz * wy) * wx
        ix, iy, iz = lx + dx, ly + dy, lz + dz
        if dense:
            # at x = 1 the upper corner lies past the level (its weight is 0): keep the row inside the table
            rows[c] = offset + min(ix + iy * stride + iz * stride * stride, size - 1)
        else:
            rows[c] = offset + ((ix ^ (iy * 2654435761) ^ (iz * 805459861)) & (size - 1))


@njit(parallel=True)
def _forward(points, table, resolutions, sizes, offsets, dense, out):
    """``out [P, L * F]``: the encoding of ``points [P, 3]`` (clamped to [0, 1] by the caller).

    Level-major, one level per thread at a time: a level's table (up to a few hundred kB)
    stays in cache while every point reads from it.
    """
    n_feat = table.shape[1]
    for level in numba.prange(resolutions.shape[0]):
        rows = np.empty(8, np.int64)
        weights = np.empty(8, np.float32)
        res, size, offset, is_dense = resolutions[level], sizes[level], offsets[level], dense[level]
        for p in range(points.shape[0]):
            _corners(points[p, 0], points[p, 1], points[p, 2], res, size, offset, is_dense, rows, weights)
            for f in range(n_feat):
                acc = np.float32(0.0)
                for c in range(8):
                    acc += weights[c] * table[rows[c], f]
                out[p, level * n_feat + f] = acc


@njit(parallel=True)
def _backward(points, grad, resolutions, sizes, offsets, dense, table_grad):
    """Add ``dL/dtable`` into ``table_grad [rows, F]`` (zeros on entry), one level per thread at a time."""
    n_feat = table_grad.shape[1]
    for level in numba.prange(resolutions.shape[0]):
        rows = np.empty(8, np.int64)
        weights = np.empty(8, np.float32)
        res, size, offset, is_dense = resolutions[level], sizes[level], offsets[level], dense[level]
        for p in range(points.shape[0]):
            _corners(points[p, 0], points[p, 1], points[p, 2], res, size, offset, is_dense, rows, weights)
            for f in range(n_feat):
                g = grad[p, level * n_feat + f]
                for c in range(8):
                    table_grad[rows[c], f] += weights[c] * g


_POINT_BLOCK = 1024


@njit(parallel=True)
def _backward_points(points, grad, table, resolutions, sizes, offsets, dense, points_grad):
    """``points_grad [P, 3]``: ``dL/dpoints`` (the trilinear weights' slopes times each corner's ``grad · row``)."""
    n_feat = table.shape[1]
    n_points = points.shape[0]
    for block in numba.prange((n_points + _POINT_BLOCK - 1) // _POINT_BLOCK):
        rows = np.empty(8, np.int64)
        weights = np.empty(8, np.float32)
        for p in range(block * _POINT_BLOCK, min(n_points, (block + 1) * _POINT_BLOCK)):
            x, y, z = points[p, 0], points[p, 1], points[p, 2]
            gx, gy, gz = np.float32(0.0), np.float32(0.0), np.float32(0.0)
            for level in range(resolutions.shape[0]):
                res = resolutions[level]
                _corners(x, y, z, res, sizes[level], offsets[level], dense[level], rows, weights)
                fx, fy, fz = _cell(res, x)[1], _cell(res, y)[1], _cell(res, z)[1]
                for c in range(8):
                    dot = np.float32(0.0)
                    for f in range(n_feat):
                        dot += table[rows[c], f] * grad[p, level * n_feat + f]
                    dx, dy, dz = c & 1, (c >> 1) & 1, (c >> 2) & 1
                    wx = fx if dx else _ONE - fx
                    wy = fy if dy else _ONE - fy
                    wz = fz if dz else _ONE - fz
                    slope = dot * res
                    gx += (slope if dx else -slope) * wy * wz
                    gy += (slope if dy else -slope) * wx * wz
                    gz += (slope if dz else -slope) * wx * wy
            points_grad[p, 0], points_grad[p, 1], points_grad[p, 2] = gx, gy, gz


class _HashGridFunction(torch.autograd.Function):
    """Autograd wrapper of the kernels: gradients to the table and, where they require it, to the points."""

    @staticmethod
    def forward(ctx, table: Tensor, points: Tensor, levels: tuple[np.ndarray, ...]) -> Tensor:  # type: ignore[override]
        pts = points.detach().contiguous().numpy()
        rows = table.detach().contiguous().numpy()
        out = np.empty((len(pts), len(levels[0]) * table.shape[1]), np.float32)
        with launch():
            _forward(pts, rows, *levels, out)
        ctx.points, ctx.levels, ctx.rows = pts, levels, table.shape
        ctx.table = rows if ctx.needs_input_grad[1] else None
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        g = grad.detach().float().contiguous().numpy()
        table_grad = points_grad = None
        with launch():
            if ctx.needs_input_grad[0]:
                table_grad = np.zeros(ctx.rows, np.float32)
                _backward(ctx.points, g, *ctx.levels, table_grad)
            if ctx.needs_input_grad[1]:
                points_grad = np.empty(ctx.points.shape, np.float32)
                _backward_points(ctx.points, g, ctx.table, *ctx.levels, points_grad)
        as_tensor = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        return as_tensor(table_grad), as_tensor(points_grad), None


def hash_encode_numba(table: Tensor, points: Tensor, resolutions: Tensor, sizes: Tensor, offsets: Tensor,
                      dense: Tensor) -> Tensor:
    """Features ``[P, L * F]`` of unit ``points [P, 3]`` (float32, clamped to [0, 1]) from ``table [rows, F]``.

    ``resolutions``, ``sizes``, ``offsets``, ``dense`` ``[L]``: each level's grid resolution,
    table size (a power of two where hashed), first row and whether it is indexed densely.
    Differentiable w.r.t. ``table`` and ``points``.
    """
    levels = (resolutions.float().numpy(), sizes.long().numpy(), offsets.long().numpy(), dense.numpy())
    return _HashGridFunction.apply(table, points, levels)
