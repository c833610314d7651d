"""Sparse (Gaussian, pixel) pair rasteriser in pure PyTorch (the ``torch`` backend).

Same compositing rules as gsplat's CUDA kernel: ``alpha = min(0.999, o * exp(-sigma))``,
a Gaussian is skipped at a pixel where ``sigma < 0`` or ``alpha < 1/255``, and a pixel
stops before the Gaussian that would take its transmittance to 1e-4 or below.

Instead of padding per-tile lists (the GPU layout), every Gaussian enumerates the pixels
of its screen-space box (``3.33 sigma`` per axis, which contains the whole ``alpha >= 1/255``
ellipse), pairs below the alpha threshold are dropped, and the rest are stably sorted by
pixel after a depth sort of the Gaussians. Compositing is then a segmented scan: the
transmittance is ``exp`` of a float64 prefix sum of ``log(1 - alpha)`` within each pixel.
This touches only contributing pairs, which on a CPU is several times less work than
tiles. Forward and backward are written by hand (:class:`_CompositePairs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4


@dataclass
class PixelPairs:
    """Contributing (Gaussian, pixel) pairs of one image, sorted by pixel then depth."""

    gauss: Tensor  # [M] Gaussian index
    pixel: Tensor  # [M] flat pixel index y * W + x
    seg_first: Tensor  # [M] index of the first pair of the same pixel
    seg_last: Tensor  # [M] index of the last pair of the same pixel
    num_pixels: int


def alpha_extent(conics: Tensor, opacities: Tensor) -> Tensor:
    """Half-widths ``[N, 2]`` (pixels) of the box holding every pixel where ``alpha >= 1/255``.

    ``o * exp(-sigma) >= 1/255`` means ``sigma <= ln(255 o)``: an ellipse whose x extent is
    ``sqrt(2 ln(255 o) * cov_xx)``. Never larger than gsplat's ``3.33 sigma`` radius; zero
    for Gaussians too transparent to ever be drawn.
    """
    a, b, c = conics.unbind(-1)
    det = (a * c - b * b).clamp_min(1e-12)
    level = 2.0 * torch.log((255.0 * opacities).clamp_min(1.0))
    return torch.sqrt(level[:, None] * torch.stack([c / det, a / det], dim=-1))


@torch.no_grad()
def drawable(conics: Tensor, opacities: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """Which Gaussians can be drawn (``[N]`` bool) and their box half-widths ``[N, 2]``.

    A Gaussian is drawn when it was not culled (both radii positive) and its opacity
    reaches ``1/255``; its box is :func:`alpha_extent` clipped by the radii.
    """
    extent = torch.minimum(alpha_extent(conics, opacities), radii.float())
    return (radii > 0).all(dim=-1) & (opacities >= ALPHA_MIN), extent


@torch.no_grad()
def pixel_pairs(
    means2d: Tensor, conics: Tensor, opacities: Tensor, depths: Tensor, radii: Tensor, width: int, height: int
) -> PixelPairs:
    """Enumerate and sort the pairs whose alpha reaches 1/255 (see module docstring)."""
    device = means2d.device
    visible, extent = drawable(conics, opacities, radii)
    visible = visible.nonzero().squeeze(-1)
    ids = visible[torch.argsort(depths[visible])]  # front to back
    mean, ext = means2d[ids], extent[ids]
    lo = torch.ceil(mean - ext - 0.5).clamp_min(0).long()
    hi = torch.floor(mean + ext - 0.5).long() + 1
    hi = torch.minimum(hi, torch.tensor([width, height], device=device))
    span = (hi - lo).clamp_min(0)
    counts = span[:, 0] * span[:, 1]
    total = int(counts.sum().item())
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return PixelPairs(empty, empty, empty, empty, width * height)

    owner = torch.repeat_interleave(torch.arange(len(ids), device=device), counts)
    # pixel of each pair, in exact integer arithmetic (pair counts can exceed float32's 2^24)
    first = (torch.cumsum(counts, 0) - counts).index_select(0, owner)
    local = torch.arange(total, device=device) - first
    width_of = span[:, 0].index_select(0, owner)
    row = torch.div(local, width_of, rounding_mode="floor")
    px = lo[:, 0].index_select(0, owner) + local - row * width_of
    py = lo[:, 1].index_select(0, owner) + row
    # one gather of packed per-Gaussian values is much kinder to the cache than several
    per = torch.cat([mean, conics[ids], opacities[ids, None]], dim=-1).index_select(0, owner)
    dx = px.float() + 0.5 - per[:, 0]
    dy = py.float() + 0.5 - per[:, 1]
    sigma = 0.5 * (per[:, 2] * dx * dx + per[:, 4] * dy * dy) + per[:, 3] * dx * dy
    alpha = (per[:, 5] * torch.exp(-sigma)).clamp_max(ALPHA_MAX)
    keep = ((sigma >= 0) & (alpha >= ALPHA_MIN)).nonzero().squeeze(-1)
    gauss = ids.index_select(0, owner.index_select(0, keep))
    pixel = (py * width + px).index_select(0, keep)

    pixel, order = torch.sort(pixel, stable=True)
    return _with_segments(gauss.index_select(0, order), pixel, width * height)


def _with_segments(gauss: Tensor, pixel: Tensor, num_pixels: int) -> PixelPairs:
    """Pairs already sorted by pixel, with the bounds of each pixel's run."""
    per_pixel = torch.bincount(pixel, minlength=num_pixels)
    ends = torch.cumsum(per_pixel, 0)
    starts = ends - per_pixel
    return PixelPairs(gauss, pixel, starts.index_select(0, pixel), ends.index_select(0, pixel) - 1, num_pixels)


def _segment_prefix(values: Tensor, pairs: PixelPairs) -> tuple[Tensor, Tensor]:
    """Exclusive prefix sums and exclusive suffix sums of ``values`` within each pixel (float64)."""
    v = values.double()
    inclusive = torch.cumsum(v, 0)
    before_segment = inclusive.index_select(0, pairs.seg_first) - v.index_select(0, pairs.seg_first)
    exclusive = inclusive - v - before_segment
    suffix = inclusive.index_select(0, pairs.seg_last) - inclusive
    return exclusive, suffix


def _pair_alpha(pairs: PixelPairs, width: int, means2d: Tensor, conics: Tensor, opacities: Tensor) -> dict[str, Tensor]:
    """Per-pair geometry, alpha and blending weight (no autograd)."""
    packed = torch.cat([means2d, conics, opacities[:, None]], dim=-1).index_select(0, pairs.gauss)
    dx = (pairs.pixel % width).float() + 0.5 - packed[:, 0]
    dy = (pairs.pixel // width).float() + 0.5 - packed[:, 1]
    con = packed[:, 2:5]
    sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    gauss = torch.exp(-sigma)
    raw = packed[:, 5] * gauss
    alpha = raw.clamp_max(ALPHA_MAX)
    log_t, _ = _segment_prefix(torch.log1p(-alpha), pairs)
    trans_excl = torch.exp(log_t)
    kept = trans_excl * (1.0 - alpha.double()) > TRANSMITTANCE_MIN
    trans_excl = trans_excl.float()
    weight = alpha * trans_excl * kept
    return dict(dx=dx, dy=dy, con=con, gauss=gauss, alpha=alpha, trans_excl=trans_excl, kept=kept,
                weight=weight, unclamped=raw <= ALPHA_MAX)


class _CompositePairs(torch.autograd.Function):
    """Front-to-back compositing over sorted pixel pairs, with a hand-written backward."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, pairs: PixelPairs, width: int):  # type: ignore[override]
        s = _pair_alpha(pairs, width, means2d, conics, opacities)
        if not bool(s["kept"].all()):
            # pairs behind a saturated pixel have zero weight and zero gradient: drop them
            kept = s.pop("kept").nonzero().squeeze(-1)
            s = {k: v.index_select(0, kept) for k, v in s.items()}
            s["kept"] = torch.ones_like(s["alpha"], dtype=torch.bool)
            pairs = _with_segments(pairs.gauss.index_select(0, kept), pairs.pixel.index_select(0, kept), pairs.num_pixels)
        out_color = colors.new_zeros(pairs.num_pixels, colors.shape[-1])
        out_color.index_add_(0, pairs.pixel, s["weight"][:, None] * colors.index_select(0, pairs.gauss))
        out_alpha = colors.new_zeros(pairs.num_pixels)
        out_alpha.index_add_(0, pairs.pixel, s["weight"])
        ctx.pairs, ctx.width, ctx.state = pairs, width, s
        ctx.save_for_backward(colors)
        return out_color, out_alpha

    @staticmethod
    def backward(ctx, grad_color: Tensor, grad_alpha: Tensor):  # type: ignore[override]
        (colors,) = ctx.saved_tensors
        pairs: PixelPairs = ctx.pairs
        s = ctx.state
        n = colors.shape[0]
        g, p = pairs.gauss, pairs.pixel
        gc = grad_color.index_select(0, p)  # [M, D]
        g_weight = (gc * colors.index_select(0, g)).sum(-1) + grad_alpha.index_select(0, p)
        _, after = _segment_prefix(g_weight * s["weight"], pairs)
        g_alpha = g_weight * s["trans_excl"] * s["kept"] - (after / (1.0 - s["alpha"].double())).float()
        g_alpha = torch.where(s["unclamped"], g_alpha, torch.zeros_like(g_alpha))
        g_sigma = -g_alpha * s["alpha"]
        dx, dy, con = s["dx"], s["dy"], s["con"]

        g_colors = torch.zeros_like(colors).index_add_(0, g, s["weight"][:, None] * gc)
        g_opac = colors.new_zeros(n).index_add_(0, g, g_alpha * s["gauss"])
        g_conic = torch.stack([0.5 * g_sigma * dx * dx, g_sigma * dx * dy, 0.5 * g_sigma * dy * dy], dim=-1)
        g_conics = colors.new_zeros(n, 3).index_add_(0, g, g_conic)
        g_mean = torch.stack(
            [-g_sigma * (con[:, 0] * dx + con[:, 1] * dy), -g_sigma * (con[:, 1] * dx + con[:, 2] * dy)], dim=-1
        )
        g_means = colors.new_zeros(n, 2).index_add_(0, g, g_mean)
        return g_means, g_conics, g_colors, g_opac, None, None


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite the Gaussians of one image front to back.

    Args:
        means2d ``[N, 2]``, conics ``[N, 3]``, colors ``[N, D]`` (any channels, e.g. RGB+depth),
        opacities ``[N]``, depths ``[N]`` (sort key), radii ``[N, 2]`` (0 = culled).

    Returns:
        ``colors [H, W, D]`` (not blended with a background) and ``alphas [H, W, 1]``.
    """
    pairs = pixel_pairs(means2d.detach(), conics.detach(), opacities.detach(), depths.detach(), radii, width, height)
    color, alpha = _CompositePairs.apply(means2d, conics, colors, opacities, pairs, width)
    return color.reshape(height, width, -1), alpha.reshape(height, width, 1)
