"""Tile-based splat rasteriser compiled for the CPU with numba (forward and backward).

Drop-in for :func:`render3d.splat.rasterize_pairs.rasterize_to_pixels` (same arguments,
same outputs, same compositing rules: ``alpha = min(0.999, o * exp(-sigma))``, skipped
where ``sigma < 0`` or ``alpha < 1/255``, a pixel stops before the Gaussian that would take
its transmittance to ``1e-4`` or below). :mod:`render3d.splat.kernels` picks it for float32
CPU tensors unless the kernel setting says ``torch``.

Layout (gsplat's CUDA design, adapted to a few CPU threads):

1. **Binning** (:func:`_bin_tiles`, serial, ``O(N + intersections)``). The drawable
   Gaussians are gathered in depth order (:func:`_prepare`, one compiled pass with a radix
   sort) into a packed ``[M, 6]`` array
   ``(x, y, conic a, b, c, opacity)``; a Gaussian's *rank* is its row there. Each rank
   gets the pixel box of its ``alpha >= 1/255`` ellipse (exactly the reference's box) and
   is appended to the list of every 16x16 tile of the box that the ellipse itself reaches
   (solved per row of tiles, :func:`_band_columns`; a box's corner tiles often miss a
   tilted ellipse). Appending in rank order leaves each tile's list sorted front to back
   (a CSR layout: ``offsets``, ``ranks``).
2. **Forward** (:func:`_forward`, ``prange`` over threads). Tiles are dealt to threads by
   decreasing list length (a deterministic, balanced schedule). Within a tile the loop is
   Gaussian-major: for each Gaussian of the list, one loop runs over the rows its ellipse
   reaches (:func:`_reach`) in each 8-pixel-wide column block of the tile its box touches
   (the scratch holds a tile block by block, :func:`_slot`, so that is one run of slots;
   :func:`_composite_run`), against per-pixel float64 transmittance and feature sums. The loop is branch-free, so LLVM
   vectorises it (AVX2 / AVX-512 where the CPU has them): ``exp`` is a polynomial
   (:func:`_exp_neg`) where a libm call would keep it scalar, ``sigma`` is the reference's
   float32 expression (:func:`_pixel_alpha`), indices are unsigned (numba's negative-index
   wraparound blocks vectorising) and the scratch arrays are flat with constant row
   strides (so the compiler sees that the rows it writes do not overlap). A pixel that
   terminates records how far down the list it got (``stop``; its transmittance is kept
   with the sign flipped, so one load tells both); the tile ends early once all its pixels
   stopped. Outputs per pixel: features, alpha, final transmittance (float64) and ``stop``.
3. **Backward** (:func:`_backward`). Each tile walks its list back to front from its
   largest ``stop``; for each Gaussian one vectorised loop runs over the same runs of slots,
   with the forward's alphas (:func:`_gaussian_gradients`). A pixel's
   transmittance before each Gaussian is recovered from the final one by division
   (``T_i = T_{i+1} / (1 - alpha_i)``, float64), and a running sum of the later Gaussians'
   ``dL/dweight * weight`` gives ``dL/dalpha``. Gradients of one (tile, Gaussian) are
   summed in float64 (the compiler may reorder these sums to vectorise them) and added
   once into that thread's own ``[M, 6 + D]`` buffer; the buffers are summed at the end,
   so no atomics are needed and results depend only on the thread count (bit for bit the
   same run to run).

Kernels are compiled and serialised as :mod:`render3d.cpu_kernels` describes.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from render3d.cpu_kernels import launch
from render3d.cpu_kernels import njit as _jit
from render3d.splat.kernels import MAX_FEATURES
from render3d.splat.rasterize_pairs import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

TILE = 16
_TILE_BITS = 4  # TILE == 1 << _TILE_BITS
_BLOCK_BITS = 3  # the kernels' scratch holds a tile as column blocks this many bits wide (see _slot)
_BLOCK = 1 << _BLOCK_BITS
_BLOCK_SLOTS_BITS = _BLOCK_BITS + _TILE_BITS  # a block's slots: TILE rows of _BLOCK pixels
# float32 constants so kernel arithmetic stays in float32 like the torch reference
_HALF = np.float32(0.5)
_ALPHA_MIN = np.float32(ALPHA_MIN)
_ALPHA_MAX = np.float32(ALPHA_MAX)
_COORD_LIMIT = np.float32(1e9)  # box bounds are clamped here before int conversion
_NUM_PARAMS = 6  # x, y, conic a, b, c, opacity: also the gradient columns before the features
_ZERO = np.float32(0.0)
_PIX1, _PIX2, _PIX3, _PIX4, _PIX5, _PIX6, _PIX7, _PIX8, _PIX9, _PIX10 = (np.uint64(TILE * TILE * row) for row in range(1, 11))  # flat scratch rows


@_jit()
def _band_columns(mx, my, a, b, c, level, py0, py1, x0, x1):
    """Pixel columns ``[lo, hi)`` of box columns ``[x0, x1)`` that rows ``[py0, py1)`` of the
    ``sigma <= level`` ellipse reach (conservatively); ``hi <= lo`` when they reach none.

    Along a row at offset ``dy`` the ellipse spans ``mx - 0.5 - (b dy +- sqrt(2 a level - det dy^2)) / a``
    (``det = ac - b^2``); its left end is convex in ``dy`` and its right end concave, so over the
    rows' centres the left end is least at ``dy = b sqrt(2 level / (det c))`` and the right end
    greatest at minus that, each clamped to the rows.
    Conics that are not positive definite keep the whole box.
    """
    det = np.float64(a) * c - np.float64(b) * b
    if a <= 0.0 or det <= 0.0:
        return x0, x1
    a64, b64, lv = np.float64(a), np.float64(b), np.float64(level)
    reach = math.sqrt(2.0 * a64 * lv / det) * (1.0 + 1e-6) + 1e-6  # |dy| where rows end
    lo_dy = max(py0 + 0.5 - np.float64(my), -reach)
    hi_dy = min(py1 - 0.5 - np.float64(my), reach)
    if lo_dy > hi_dy:
        return 0, 0
    turn = b64 * math.sqrt(2.0 * lv / (det * c))
    d_left, d_right = min(max(turn, lo_dy), hi_dy), min(max(-turn, lo_dy), hi_dy)
    left = np.float64(mx) - 0.5 - (b64 * d_left + math.sqrt(max(2.0 * a64 * lv - det * d_left * d_left, 0.0))) / a64
    right = np.float64(mx) - 0.5 - (b64 * d_right - math.sqrt(max(2.0 * a64 * lv - det * d_right * d_right, 0.0))) / a64
    lo = max(x0, math.ceil(max(left - 1e-3, -1e9)))
    hi = min(x1, math.floor(min(right + 1e-3, 1e9)) + 1)
    return lo, hi


@_jit()
def _depth_order(keys):
    """Indices that sort float32 ``keys`` ascending, ties in index order (as a stable argsort).

    An LSD radix sort: the float bits become unsigned integers in the same order (sign bit
    set for positives, every bit flipped for negatives, -0.0 read as 0.0), then two stable counting passes of
    16 bits each; ``O(N)`` where the comparison sorts it replaces are ``O(N log N)``
    (0.18 ms against 1.3 ms for 15k keys on the 2-core CPU).
    """
    n = keys.shape[0]
    bits = keys.view(np.uint32)
    sortable = np.empty(n, np.uint32)
    for i in range(n):
        b = bits[i] if bits[i] != np.uint32(0x80000000) else np.uint32(0)  # -0.0 ties with 0.0
        sortable[i] = b ^ np.uint32(0xFFFFFFFF) if b >> np.uint32(31) else b | np.uint32(0x80000000)
    order = np.arange(n).astype(np.int64)
    spare = np.empty(n, np.int64)
    for shift in (0, 16):
        starts = np.zeros(65537, np.int64)
        for i in range(n):
            starts[((sortable[order[i]] >> np.uint32(shift)) & np.uint32(0xFFFF)) + 1] += 1
        for digit in range(65536):
            starts[digit + 1] += starts[digit]
        for i in range(n):
            digit = (sortable[order[i]] >> np.uint32(shift)) & np.uint32(0xFFFF)
            spare[starts[digit]] = order[i]
            starts[digit] += 1
        order, spare = spare, order
    return order


@_jit()
def _prepare(means2d, conics, opacities, depths, radii, feats, feat_width):
    """The drawable Gaussians in depth order, gathered for the kernels (what :func:`~render3d.splat.rasterize_pairs.drawable` and a
    stable argsort of the depths give, in one pass instead of a dozen small torch ops).

    Returns ``ranked [M]`` (rank -> Gaussian id), ``packed [M, 6]`` (x, y, conic a, b, c,
    opacity), the features zero-padded to ``feat_width`` columns, and the box half-widths
    ``[M, 2]`` of :func:`render3d.splat.rasterize_pairs.alpha_extent` clipped by the radii,
    in the same float32 arithmetic.
    """
    n = means2d.shape[0]
    keep = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if radii[i, 0] > 0 and radii[i, 1] > 0 and opacities[i] >= _ALPHA_MIN:
            keep[m] = i
            m += 1
    keys = np.empty(m, np.float32)
    for j in range(m):
        keys[j] = depths[keep[j]]
    order = _depth_order(keys)
    ranked = np.empty(m, np.int64)
    packed = np.empty((m, _NUM_PARAMS), np.float32)
    features = np.zeros((m, feat_width), np.float32)
    extent = np.empty((m, 2), np.float32)
    for r in range(m):
        i = keep[order[r]]
        ranked[r] = i
        a, b, c, o = conics[i, 0], conics[i, 1], conics[i, 2], opacities[i]
        packed[r, 0], packed[r, 1], packed[r, 2], packed[r, 3], packed[r, 4], packed[r, 5] = means2d[i, 0], means2d[i, 1], a, b, c, o
        for d in range(feats.shape[1]):
            features[r, d] = feats[i, d]
        det = max(a * c - b * b, np.float32(1e-12))
        level = np.float32(2.0) * np.float32(math.log(max(np.float32(255.0) * o, np.float32(1.0))))
        extent[r, 0] = min(np.float32(math.sqrt(level * (c / det))), np.float32(radii[i, 0]))
        extent[r, 1] = min(np.float32(math.sqrt(level * (a / det))), np.float32(radii[i, 1]))
    return ranked, packed, features, extent


def _levels(packed: np.ndarray) -> np.ndarray:
    """``[M]`` float64: the ``sigma`` level of each Gaussian's ``alpha >= 1/255`` ellipse in ``packed``.

    ``ln(255 o)`` with a small margin (``sigma`` at or below it can give ``alpha >= 1/255``);
    computed once per image (vectorised) for the binning and the rows a tile visits.
    """
    return np.log(np.maximum(255.0 * packed[:, 5].astype(np.float64), 1.0)) * 1.001 + 1e-3


@_jit()
def _bin_tiles(packed, levels, extent, width, height):
    """Pixel boxes ``[M, 4]`` (x0, x1, y0, y1; half-open) and the tile lists of ranks.

    Returns ``(boxes, offsets [T+1], ranks [offsets[-1]])``: tile ``t``'s list is
    ``ranks[offsets[t]:offsets[t+1]]``, in depth order (``levels``: :func:`_levels`).
    A Gaussian is listed in the tiles its box touches where, row band by row band, its ellipse
    reaches (:func:`_band_columns`; a box one tile wide or high is its ellipse's own extent
    there, so it keeps all its tiles).
    """
    m = packed.shape[0]
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = tiles_x * ((height + TILE - 1) // TILE)
    boxes = np.zeros((m, 4), np.int64)
    offsets = np.zeros(n_tiles + 1, np.int64)  # first: list lengths, shifted by one
    for r in range(m):
        for axis in range(2):
            # the reference's box, in float32: ceil(mean - ext - 0.5) .. floor(mean + ext - 0.5)
            lo = min(max(packed[r, axis] - extent[r, axis] - _HALF, -_COORD_LIMIT), _COORD_LIMIT)
            hi = min(max(packed[r, axis] + extent[r, axis] - _HALF, -_COORD_LIMIT), _COORD_LIMIT)
            boxes[r, 2 * axis] = max(math.ceil(lo), 0)
            boxes[r, 2 * axis + 1] = min(math.floor(hi) + 1, width if axis == 0 else height)
    first_band = np.zeros(m + 1, np.int64)  # Gaussian r's tile rows: bands first_band[r] .. first_band[r + 1]
    for r in range(m):
        y0, y1 = boxes[r, 2], boxes[r, 3]
        rows = (y1 - 1) // TILE - y0 // TILE + 1 if y1 > y0 and boxes[r, 1] > boxes[r, 0] else 0
        first_band[r + 1] = first_band[r] + rows
    bands = np.empty((first_band[m], 2), np.int64)  # first and last + 1 tile column of each band
    for r in range(m):
        x0, x1, y0, y1 = boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3]
        whole_box = first_band[r + 1] - first_band[r] == 1 or x0 // TILE == (x1 - 1) // TILE
        for i in range(first_band[r + 1] - first_band[r]):
            ty = y0 // TILE + i
            if whole_box:
                lo, hi = x0, x1
            else:
                lo, hi = _band_columns(packed[r, 0], packed[r, 1], packed[r, 2], packed[r, 3], packed[r, 4], levels[r],
                                       max(y0, ty * TILE), min(y1, (ty + 1) * TILE), x0, x1)
            band = first_band[r] + i
            bands[band, 0], bands[band, 1] = (lo // TILE, (hi - 1) // TILE + 1) if hi > lo else (0, 0)
            for tx in range(bands[band, 0], bands[band, 1]):
                offsets[ty * tiles_x + tx + 1] += 1
    cursor = np.empty(n_tiles, np.int64)
    for t in range(n_tiles):
        cursor[t] = offsets[t]
        offsets[t + 1] += offsets[t]
    ranks = np.empty(offsets[n_tiles], np.int32)
    for r in range(m):
        for band in range(first_band[r], first_band[r + 1]):
            ty = boxes[r, 2] // TILE + band - first_band[r]
            for tx in range(bands[band, 0], bands[band, 1]):
                t = ty * tiles_x + tx
                ranks[cursor[t]] = r
                cursor[t] += 1
    return boxes, offsets, ranks


@_jit(inline=True)
def _exp_neg(sigma):
    """``exp(-sigma)`` as float32, for a float32 ``sigma``, in arithmetic the compiler vectorises.

    ``(e^(-s/16))^16`` with ``s`` clamped to ``[0, 12]`` and ``e^u`` by its degree-8 Taylor
    polynomial in float64. The relative error is under 5e-9 for ``s <= 5.6`` (wherever
    ``alpha`` can reach 1/255) and under 7e-6 up to 12, past which ``alpha`` is far below
    1/255 for every opacity; the kernels skip ``sigma < 0`` themselves. A libm ``exp`` call
    per pixel would keep the pixel loops scalar.
    """
    u = -min(max(np.float64(sigma), 0.0), 12.0) * 0.0625
    e = 1.0 + u * (1.0 + u * (1.0 / 2 + u * (1.0 / 6 + u * (1.0 / 24 + u * (1.0 / 120 + u * (
        1.0 / 720 + u * (1.0 / 5040 + u * (1.0 / 40320))))))))
    e = e * e
    e = e * e
    e = e * e
    return np.float32(e * e)


@_jit(inline=True)
def _slot(row, col):
    """Scratch slot of tile pixel ``(row, col)``. The kernels' per-pixel scratch holds a tile as
    8-pixel-wide column blocks, each row by row, so the rows of one block that a Gaussian
    reaches are one run of consecutive slots: one vectorised loop, and a small Gaussian
    pays for 8 pixels per row, not 16."""
    return ((col >> _BLOCK_BITS) << _BLOCK_SLOTS_BITS) | (row << _BLOCK_BITS) | (col & (_BLOCK - 1))


@_jit(inline=True)
def _slot_pixel(p):
    """Tile row and column of scratch slot ``p`` (the inverse of :func:`_slot`)."""
    return (p >> _BLOCK_BITS) & (TILE - 1), ((p >> _BLOCK_SLOTS_BITS) << _BLOCK_BITS) | (p & (_BLOCK - 1))


@_jit(inline=True)
def _block_runs(cx0, cx1, ry0, ry1):
    """The column blocks ``[first, last)`` that tile-local columns ``[cx0, cx1)`` touch, and the
    slot offsets ``[s0, s1)`` of tile-local rows ``[ry0, ry1)`` within each block."""
    return cx0 >> _BLOCK_BITS, ((cx1 - 1) >> _BLOCK_BITS) + 1, ry0 << _BLOCK_BITS, ry1 << _BLOCK_BITS


@_jit(inline=True)
def _pixel_alpha(row, col, x0, y0, mx, my, a, b, c, o):
    """At tile pixel ``(row, col)`` of the tile at ``(x0, y0)``: ``dx``, ``dy``, the reference's
    float32 ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``exp(-sigma)`` and ``o exp(-sigma)``
    before the 0.999 clamp. The one place both passes compute them, so they see the same alphas."""
    dx = np.float32(x0 + col) + _HALF - mx
    dy = np.float32(y0 + row) + _HALF - my
    sigma = _HALF * (a * dx * dx + c * dy * dy) + b * dx * dy
    vis = _exp_neg(sigma)
    return dx, dy, sigma, vis, o * vis


@_jit()
def _tile_bounds(t, tiles_x, width, height):
    """Top-left pixel and size of tile ``t``."""
    x0 = (t % tiles_x) * TILE
    y0 = (t // tiles_x) * TILE
    return x0, y0, min(TILE, width - x0), min(TILE, height - y0)


@_jit(inline=True)
def _reach(r, packed, boxes, levels, x0, y0, tw, th):
    """Where Gaussian ``r`` is drawn in the tile at ``(x0, y0)`` (size ``tw x th``).

    Returns its tile-local box columns ``[cx0, cx1)``, the image rows ``[ry0, ry1)`` of its box
    that its ellipse reaches (``|dy| <= sqrt(2 a level / det)``; the whole box for conics that
    are not positive definite).
    """
    my, a, b, c = packed[r, 1], packed[r, 2], packed[r, 3], packed[r, 4]
    cx0, cx1 = max(boxes[r, 0], x0) - x0, min(boxes[r, 1], x0 + tw) - x0
    ry0, ry1 = max(boxes[r, 2], y0), min(boxes[r, 3], y0 + th)
    det = np.float64(a) * c - np.float64(b) * b
    if a > 0 and det > 0:
        reach = math.sqrt(2.0 * np.float64(a) * levels[r] / det) * (1.0 + 1e-6) + 1e-6
        ry0 = max(ry0, math.ceil(max(np.float64(my) - 0.5 - reach, -1e9)))
        ry1 = min(ry1, math.floor(min(np.float64(my) - 0.5 + reach, 1e9)) + 1)
    return cx0, cx1, ry0, ry1


@_jit(inline=True)
def _composite_run(k, p0, p1, x0, y0, mx, my, a, b, c, o, cx0, cx1, pix, stop, weights, f0, f1, f2, f3):
    """Composite Gaussian ``k`` of the list into scratch slots ``p0 .. p1`` (a run of one column
    block, :func:`_slot`; its box columns are ``[cx0, cx1)``).

    ``pix`` (flat, 256 slots per quantity): transmittance (row 0; negative once a pixel stopped) and
    feature sums (rows 1..). One loop over the slots, branch-free so the compiler
    vectorises it. ``weights`` gets each pixel's blending weight (0 where it skipped).
    Returns how many pixels stopped here and how many composited.
    """
    n_done = 0
    n_hit = 0
    for p in range(p0, p1):
        i = np.uint64(p)  # unsigned: no negative-index wraparound, which blocks vectorising
        row, col = _slot_pixel(p)
        _, _, sigma, _, raw = _pixel_alpha(row, col, x0, y0, mx, my, a, b, c, o)
        alpha = min(_ALPHA_MAX, raw)
        t_now = pix[i]
        ok = (col >= cx0) & (col < cx1) & (sigma >= _ZERO) & (alpha >= _ALPHA_MIN) & (t_now > 0.0)
        t_next = t_now * (1.0 - np.float64(alpha))
        end = ok & (t_next <= TRANSMITTANCE_MIN)
        live = ok & (t_next > TRANSMITTANCE_MIN)
        w = alpha * t_now if live else 0.0
        weights[i] = w
        pix[i + _PIX1] += w * f0
        pix[i + _PIX2] += w * f1
        pix[i + _PIX3] += w * f2
        pix[i + _PIX4] += w * f3
        pix[i] = -t_now if end else (t_next if live else t_now)
        stop[i] = k if end else stop[i]
        n_done += 1 if end else 0
        n_hit += 1 if live else 0
    return n_done, n_hit


@_jit()
def _forward_tile(t, tiles_x, width, height, offsets, ranks, boxes, levels, packed, feats, pix, stop, weights,
                  out_feat, out_alpha, out_trans, out_stop):
    """Composite tile ``t`` front to back (scratch: ``pix``, ``stop`` and ``weights`` as :func:`_composite_run` uses them).

    A stopped pixel keeps its transmittance with the sign flipped, so one load tells both.
    """
    x0, y0, tw, th = _tile_bounds(t, tiles_x, width, height)
    start, count = offsets[t], offsets[t + 1] - offsets[t]
    n_feat = feats.shape[1]
    area = TILE * TILE
    for p in range(area):
        pix[p] = 1.0
        stop[p] = count  # list entries a pixel composited before stopping (count: never stopped)
    pix[area:] = 0.0
    n_done = 0
    for k in range(count):
        r = ranks[start + k]
        mx, my, a, b, c, o = packed[r, 0], packed[r, 1], packed[r, 2], packed[r, 3], packed[r, 4], packed[r, 5]
        f0, f1, f2, f3 = np.float64(feats[r, 0]), np.float64(feats[r, 1]), np.float64(feats[r, 2]), np.float64(feats[r, 3])
        cx0, cx1, ry0, ry1 = _reach(r, packed, boxes, levels, x0, y0, tw, th)
        first, last, s0, s1 = _block_runs(cx0, cx1, ry0 - y0, ry1 - y0)
        for block in range(first, last):
            p0, p1 = (block << _BLOCK_SLOTS_BITS) + s0, (block << _BLOCK_SLOTS_BITS) + s1
            done, hit = _composite_run(k, p0, p1, x0, y0, mx, my, a, b, c, o, cx0, cx1, pix, stop, weights, f0, f1, f2, f3)
            n_done += done
            if hit and n_feat > 4:  # the features past the fourth
                for d in range(4, n_feat):
                    f, base = np.float64(feats[r, d]), np.uint64((1 + d) * area)
                    for p in range(p0, p1):
                        pix[base + np.uint64(p)] += weights[np.uint64(p)] * f
        if n_done == tw * th:
            break
    for py in range(th):
        for px in range(tw):
            p, q = _slot(py, px), (y0 + py) * width + x0 + px
            for d in range(n_feat):
                out_feat[q, d] = pix[(1 + d) * area + p]
            out_alpha[q] = 1.0 - abs(pix[p])
            out_trans[q] = abs(pix[p])
            out_stop[q] = stop[p]


@_jit(parallel=True)
def _forward(offsets, ranks, boxes, levels, schedule, packed, feats, width, height, n_threads,
             out_feat, out_alpha, out_trans, out_stop):
    """Fill features ``[H*W, D]``, alpha, final transmittance (float64) and ``stop`` per pixel."""
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    for thread in numba.prange(n_threads):
        pix = np.empty((1 + feats.shape[1]) * TILE * TILE, np.float64)
        stop = np.empty(TILE * TILE, np.int64)
        weights = np.empty(TILE * TILE, np.float64)
        for s in range(thread, n_tiles, n_threads):
            _forward_tile(schedule[s], tiles_x, width, height, offsets, ranks, boxes, levels, packed, feats,
                          pix, stop, weights, out_feat, out_alpha, out_trans, out_stop)


@_jit(inline=True)
def _gaussian_gradients(k, p0, p1, x0, y0, mx, my, a, b, c, o, cx0, cx1, pix, stop, f0, f1, f2, f3, f4, f5, f6, f7, out):
    """Gradients of one Gaussian (list entry ``k``) over scratch slots ``p0 .. p1`` (a run of one
    column block, :func:`_slot`), added to ``out``: means2d (2), conics (3), opacity, features (8).

    ``pix`` (flat, 256 slots per quantity): transmittance behind (row 0; becomes the one in front of
    this Gaussian), ``sum dL/dweight * weight`` of the later Gaussians (1), ``dL/dalpha``
    (2) and ``dL/dfeatures`` (3..10, zeros past the image's channels). One loop over the
    slots, branch-free, with the sums reassociated, so the compiler vectorises it; the
    flat scratch rows have constant strides, so it sees that they do not overlap. Returns
    how many pixels the Gaussian touched.
    """
    n_hit = 0
    g_mx = g_my = g_a = g_b = g_c = g_o = 0.0
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    for p in range(p0, p1):
        i = np.uint64(p)  # unsigned: no negative-index wraparound, which blocks vectorising
        row, col = _slot_pixel(p)
        dx, dy, sigma, vis, raw = _pixel_alpha(row, col, x0, y0, mx, my, a, b, c, o)
        alpha = min(_ALPHA_MAX, raw)
        ok = (col >= cx0) & (col < cx1) & (k < stop[i]) & (sigma >= _ZERO) & (alpha >= _ALPHA_MIN)
        inv_keep = 1.0 / (1.0 - np.float64(alpha))
        t_behind = pix[i]
        t_front = t_behind * inv_keep  # transmittance in front of this Gaussian
        h0, h1, h2, h3 = pix[i + _PIX3], pix[i + _PIX4], pix[i + _PIX5], pix[i + _PIX6]
        h4, h5, h6, h7 = pix[i + _PIX7], pix[i + _PIX8], pix[i + _PIX9], pix[i + _PIX10]
        weight = alpha * t_front if ok else 0.0
        g_weight = (pix[i + _PIX2] + h0 * f0 + h1 * f1 + h2 * f2 + h3 * f3) + (h4 * f4 + h5 * f5 + h6 * f6 + h7 * f7)
        g_alpha = g_weight * t_front - pix[i + _PIX1] * inv_keep
        pix[i] = t_front if ok else t_behind
        pix[i + _PIX1] += g_weight * weight
        l0 += weight * h0
        l1 += weight * h1
        l2 += weight * h2
        l3 += weight * h3
        l4 += weight * h4
        l5 += weight * h5
        l6 += weight * h6
        l7 += weight * h7
        free = ok & (raw <= _ALPHA_MAX)  # clamped alphas do not depend on the parameters
        g_sigma = -g_alpha * alpha if free else 0.0
        g_mx -= g_sigma * (a * dx + b * dy)
        g_my -= g_sigma * (b * dx + c * dy)
        g_a += 0.5 * g_sigma * dx * dx
        g_b += g_sigma * dx * dy
        g_c += 0.5 * g_sigma * dy * dy
        g_o += g_alpha * vis if free else 0.0
        n_hit += 1 if ok else 0
    out[0] += g_mx
    out[1] += g_my
    out[2] += g_a
    out[3] += g_b
    out[4] += g_c
    out[5] += g_o
    out[6] += l0
    out[7] += l1
    out[8] += l2
    out[9] += l3
    out[10] += l4
    out[11] += l5
    out[12] += l6
    out[13] += l7
    return n_hit


@_jit(numpy_errors=True, reassociate=True)  # the pixel loop's division and sums vectorise
def _backward_tile(t, tiles_x, width, height, offsets, ranks, boxes, levels, packed, feats, out_trans, out_stop,
                   grad_feat, grad_alpha, pix, stop, out, grads):
    """Walk tile ``t``'s list back to front, adding each Gaussian's gradient into ``grads``
    (scratch: ``pix`` and ``out`` as :func:`_gaussian_gradients` uses them, ``stop``)."""
    x0, y0, tw, th = _tile_bounds(t, tiles_x, width, height)
    start = offsets[t]
    n_feat = feats.shape[1]
    area = TILE * TILE
    last = 0
    pix[:] = 0.0
    for p in range(area):
        pix[p] = 1.0  # pixels outside the image keep a finite division
    for py in range(th):
        for px in range(tw):
            p, q = _slot(py, px), (y0 + py) * width + x0 + px
            pix[p] = out_trans[q]
            pix[2 * area + p] = grad_alpha[q]
            for d in range(n_feat):
                pix[(3 + d) * area + p] = grad_feat[q, d]
            stop[p] = out_stop[q]
            last = max(last, stop[p])
    for k in range(last - 1, -1, -1):
        r = ranks[start + k]
        mx, my, a, b, c, o = packed[r, 0], packed[r, 1], packed[r, 2], packed[r, 3], packed[r, 4], packed[r, 5]
        f0, f1, f2, f3 = np.float64(feats[r, 0]), np.float64(feats[r, 1]), np.float64(feats[r, 2]), np.float64(feats[r, 3])
        f4 = f5 = f6 = f7 = 0.0
        if n_feat > 4:
            f4, f5, f6, f7 = np.float64(feats[r, 4]), np.float64(feats[r, 5]), np.float64(feats[r, 6]), np.float64(feats[r, 7])
        cx0, cx1, ry0, ry1 = _reach(r, packed, boxes, levels, x0, y0, tw, th)
        first, last, s0, s1 = _block_runs(cx0, cx1, ry0 - y0, ry1 - y0)
        out[:] = 0.0
        touched = 0
        for block in range(first, last):
            base = block << _BLOCK_SLOTS_BITS
            touched += _gaussian_gradients(k, base + s0, base + s1, x0, y0, mx, my, a, b, c, o, cx0, cx1,
                                           pix, stop, f0, f1, f2, f3, f4, f5, f6, f7, out)
        if touched:
            for col in range(6 + n_feat):
                grads[r, col] += out[col]


@_jit(parallel=True)
def _backward(offsets, ranks, boxes, levels, schedule, packed, feats, out_trans, out_stop, grad_feat, grad_alpha,
              width, height, per_thread):
    """Add each thread's gradients ``[M, 6 + D]`` into ``per_thread[thread]`` (zeros on entry).

    Columns: means2d (2), conics (3), opacity, features (D); rows: ranks.
    """
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = offsets.shape[0] - 1
    n_threads = per_thread.shape[0]
    for thread in numba.prange(n_threads):
        pix = np.empty((3 + MAX_FEATURES) * TILE * TILE, np.float64)
        stop = np.empty(TILE * TILE, np.int64)
        out = np.empty(6 + MAX_FEATURES, np.float64)
        for s in range(thread, n_tiles, n_threads):
            _backward_tile(schedule[s], tiles_x, width, height, offsets, ranks, boxes, levels, packed, feats, out_trans,
                           out_stop, grad_feat, grad_alpha, pix, stop, out, per_thread[thread])


@_jit()
def _schedule(offsets):
    """Tiles by decreasing list length (ties by index): the kernels deal them round-robin to threads."""
    n_tiles = offsets.shape[0] - 1
    keys = np.empty(n_tiles, np.float32)  # exact: lists are far shorter than 2^24
    for t in range(n_tiles):
        keys[t] = -np.float32(offsets[t + 1] - offsets[t])
    return _depth_order(keys)


@_jit()
def _gradients_by_id(per_thread, ranked, n, columns):
    """``[n, columns]`` float32: the threads' gradient rows summed (in thread order) and put back
    from ranks to Gaussian ids; zeros for Gaussians that were not drawn."""
    out = np.zeros((n, columns), np.float32)
    for r in range(ranked.shape[0]):
        for j in range(columns):
            total = np.float32(0.0)
            for thread in range(per_thread.shape[0]):
                total += per_thread[thread, r, j]
            out[ranked[r], j] = total
    return out


def _numpy(t: Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


def _kernel_width(channels: int) -> int:
    """Feature columns the kernels take for ``channels`` (``<= MAX_FEATURES``): 4 or 8, zero-padded;
    the forward's pixel loop holds four of them in scalars, the rest in a second pass."""
    return 4 if channels <= 4 else MAX_FEATURES


def _padded(t: Tensor) -> np.ndarray:
    """``[..., D]`` as float32 numpy ``[..., _kernel_width(D)]`` (zeros after column ``D``)."""
    width = _kernel_width(t.shape[-1])
    if t.shape[-1] == width:
        return _numpy(t)
    out = np.zeros((*t.shape[:-1], width), np.float32)
    out[..., : t.shape[-1]] = _numpy(t)
    return out


class _RasterizeTiles(torch.autograd.Function):
    """Autograd wrapper: the forward and backward kernels above, over the same tile lists."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, feats: Tensor, opacities: Tensor,  # type: ignore[override]
                depths: Tensor, radii: Tensor, width: int, height: int):
        with torch.no_grad():
            n_threads = numba.get_num_threads()
            with launch():
                ranked, packed, feats_ranked, extent = _prepare(
                    _numpy(means2d), _numpy(conics), _numpy(opacities), _numpy(depths), radii.detach().contiguous().numpy(),
                    _numpy(feats), _kernel_width(feats.shape[1]))
                levels = _levels(packed)
                boxes, offsets, ranks = _bin_tiles(packed, levels, extent, width, height)
                schedule = _schedule(offsets)
                out_feat = np.zeros((height * width, feats_ranked.shape[1]), np.float32)
                out_alpha = np.zeros(height * width, np.float32)
                out_trans = np.ones(height * width, np.float64)
                out_stop = np.zeros(height * width, np.int32)
                _forward(offsets, ranks, boxes, levels, schedule, packed, feats_ranked, width, height, n_threads,
                         out_feat, out_alpha, out_trans, out_stop)
        ctx.lists = (offsets, ranks, boxes, levels, schedule, packed, feats_ranked, out_trans, out_stop)
        ctx.ranked, ctx.size, ctx.n_threads, ctx.num = ranked, (width, height), n_threads, len(means2d)
        ctx.n_feat = feats.shape[1]
        out = torch.from_numpy(out_feat[:, : feats.shape[1]]).reshape(height, width, -1).to(feats.dtype)
        return out, torch.from_numpy(out_alpha).reshape(height, width, 1).to(feats.dtype)

    @staticmethod
    def backward(ctx, grad_feat: Tensor, grad_alpha: Tensor):  # type: ignore[override]
        width, height = ctx.size
        packed, feats_ranked = ctx.lists[5], ctx.lists[6]
        per_thread = np.zeros((ctx.n_threads, len(packed), _NUM_PARAMS + feats_ranked.shape[1]), np.float32)
        with launch():
            _backward(*ctx.lists, _padded(grad_feat).reshape(height * width, -1), _numpy(grad_alpha).reshape(-1),
                      width, height, per_thread)
            full = torch.from_numpy(_gradients_by_id(per_thread, ctx.ranked, ctx.num, _NUM_PARAMS + ctx.n_feat))
        g_means, g_conics, g_opac, g_feats = full.split([2, 3, 1, ctx.n_feat], dim=-1)
        return g_means, g_conics, g_feats, g_opac.squeeze(-1), None, None, None, None


def rasterize_to_pixels_numba(
    means2d: Tensor,
    conics: Tensor,
    feats: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite the Gaussians of one image front to back with the compiled tile kernels.

    Args:
        means2d ``[N, 2]``, conics ``[N, 3]``, feats ``[N, D]`` (``D <= MAX_FEATURES``, e.g. RGB+depth),
        opacities ``[N]``, depths ``[N]`` (sort key), radii ``[N, 2]`` (0 = culled); CPU tensors.

    Returns:
        ``features [H, W, D]`` (not blended with a background) and ``alphas [H, W, 1]``;
        differentiable w.r.t. means2d, conics, feats and opacities.
    """
    if feats.shape[-1] > MAX_FEATURES:
        raise ValueError(f"the compiled rasteriser takes at most {MAX_FEATURES} feature channels, got {feats.shape[-1]}")
    return _RasterizeTiles.apply(means2d, conics, feats, opacities, depths, radii, width, height)
