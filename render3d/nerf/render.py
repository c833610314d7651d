"""Volume rendering of a field along rays, through nerfacc: dense samples with a validity mask
(:func:`render_dense`, training) and front-to-back marching with early exit
(:func:`render_front_to_back`, rendering). The samplers that place the samples are in
:mod:`render3d.nerf.estimators`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from render3d.nerf.sampler import RaySamples


@dataclass
class RayBundleOutput:
    """Per-ray results: rgb ``[R, 3]``, opacity ``[R, 1]``, expected distance along the ray ``[R, 1]``
    (of the visible matter: weights normalised by opacity), sample count, and estimator extras
    (e.g. the coarse pass of hierarchical sampling)."""

    rgb: Tensor
    alpha: Tensor
    distance: Tensor
    num_samples: int
    extras: dict[str, Tensor] = field(default_factory=dict)


def render_dense(field: nn.Module, origins: Tensor, dirs: Tensor, t_starts: Tensor, t_ends: Tensor, valid: Tensor,
                 background: Optional[Tensor]) -> tuple[RayBundleOutput, Tensor]:
    """Evaluate ``field`` only at ``valid`` samples of a dense ``[R, S]`` layout and composite.

    Returns the output and the per-sample weights ``[R, S]`` (used by coarse-to-fine sampling).
    """
    import nerfacc

    ray_ids, sample_ids = valid.nonzero(as_tuple=True)
    mids = 0.5 * (t_starts + t_ends)[ray_ids, sample_ids]
    rgb_v, sigma_v = field(origins[ray_ids] + dirs[ray_ids] * mids[:, None], dirs[ray_ids])
    sigma = torch.zeros_like(t_starts).index_put((ray_ids, sample_ids), sigma_v)
    rgb = torch.zeros(*t_starts.shape, 3, device=t_starts.device, dtype=rgb_v.dtype).index_put((ray_ids, sample_ids), rgb_v)
    colors, opacities, depths, extras = nerfacc.rendering(
        t_starts, t_ends, rgb_sigma_fn=lambda *_: (rgb, sigma), render_bkgd=background
    )
    return RayBundleOutput(colors, opacities, depths, int(ray_ids.numel())), extras["weights"]  # nerfacc's depths are expected depths


def normalized_distance(weighted_t: Tensor, opacity: Tensor) -> Tensor:
    """Expected distance of the visible matter: ``sum(w t) / sum(w)`` (0 where nothing is seen)."""
    return weighted_t / opacity.clamp_min(torch.finfo(opacity.dtype).eps)


@torch.no_grad()
def render_front_to_back(field: nn.Module, origins: Tensor, dirs: Tensor, samples: RaySamples, background: Optional[Tensor],
                         eps: float = 1e-4, segment: int = 16) -> RayBundleOutput:
    """Inference rendering: march ``segment`` samples at a time, front to back, on rays still visible.

    Each sample is evaluated once (colour and density together) and a ray stops being
    evaluated once its transmittance falls to ``eps``, so no separate density pass is
    needed. Weights come from nerfacc with the transmittance carried in (``prefix_trans``).
    """
    import nerfacc

    r, total = samples.valid.shape
    device = origins.device
    color = torch.zeros(r, 3, device=device)
    opacity = torch.zeros(r, device=device)
    weighted_t = torch.zeros(r, device=device)
    transmittance = torch.ones(r, device=device)
    count = 0
    for start in range(0, total, segment):
        alive = (transmittance > eps).nonzero().squeeze(-1)
        valid = samples.valid[alive, start : start + segment]
        busy = valid.any(dim=1)  # rays with work in this segment
        if not bool(busy.any()):
            continue
        alive, valid = alive[busy], valid[busy]
        ray_ids, sample_ids = valid.nonzero(as_tuple=True)
        t0, t1 = samples.t_starts[alive, start : start + segment], samples.t_ends[alive, start : start + segment]
        mids = 0.5 * (t0 + t1)
        rays = alive[ray_ids]
        rgb_v, sigma_v = field(origins[rays] + dirs[rays] * mids[ray_ids, sample_ids, None], dirs[rays])
        sigma = torch.zeros_like(t0).index_put((ray_ids, sample_ids), sigma_v)
        rgb = torch.zeros(*t0.shape, 3, device=device, dtype=rgb_v.dtype).index_put((ray_ids, sample_ids), rgb_v)
        weights, _, _ = nerfacc.render_weight_from_density(t0, t1, sigma, prefix_trans=transmittance[alive, None])
        color[alive] += (weights[..., None] * rgb).sum(1)
        opacity[alive] += weights.sum(1)
        weighted_t[alive] += (weights * mids).sum(1)
        transmittance[alive] *= torch.exp(-(sigma * (t1 - t0)).sum(1))
        count += sigma_v.numel()
    opacity = opacity[:, None]
    distance = normalized_distance(weighted_t[:, None], opacity)
    if background is not None:
        color = color + background * (1.0 - opacity)
    return RayBundleOutput(color, opacity, distance, count)
