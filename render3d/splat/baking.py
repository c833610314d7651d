"""Gaussians trained in the antialiased mode, made to render the same in classic renderers.

A model trained with ``--splat.antialiased`` composites each Gaussian with its opacity times
a compensation ``sqrt(det(Σ2d) / det(Σ2d + eps2d·I))`` that depends on how large the Gaussian
appears in the view (:mod:`render3d.splat.project`). Viewers of the reference PLY layout and
the ``.splat`` format know nothing of it and would draw such a model too opaque: small
Gaussians would swell into dark or bright specks. Exports therefore bake the compensation
the training views saw into the opacities. The result matches the antialiased render at the
training cameras' distances and resolutions; closer or farther views differ where the
compensation changes with the distance, which is what the mode exists for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor, nn

from render3d.cameras import Cameras
from render3d.splat.model import GaussianSplats
from render3d.splat.kernels import splat_kernels


def mean_compensations(model: GaussianSplats, cameras: Cameras, chunk: int = 8) -> Tensor:
    """Each Gaussian's antialiasing compensation ``[N]`` averaged over the ``cameras`` that draw it (1 where none does).

    Args:
        model: the Gaussians (any raster settings; the compensation is computed in the antialiased mode).
        cameras: the views to average over, usually the training cameras (``C`` views, projected ``chunk`` at a time).
    """
    settings = model.settings
    total = torch.zeros(model.num_gaussians)
    count = torch.zeros(model.num_gaussians)
    with torch.no_grad():
        a = model.activated()
        means, quats, scales = a["means"], a["quats"], a["scales"]
        for start in range(0, len(cameras), chunk):
            cams = cameras[start:start + chunk].to(means.device)
            proj = splat_kernels(means, cams.viewmats).project(means, quats, scales, cams.viewmats, cams.K, cams.width,
                                                                cams.height, settings.eps2d, settings.near_plane,
                                                                settings.far_plane, antialiased=True)
            drawn = (proj.radii > 0).all(-1).float().cpu()
            total += (proj.compensations.float().cpu() * drawn).sum(0)
            count += drawn.sum(0)
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))


def baked_for_classic_renderers(model: GaussianSplats, cameras: Optional[Cameras] = None) -> GaussianSplats:
    """``model`` itself when it was not trained antialiased; else a classic-mode copy whose opacities carry the mean
    compensation of ``cameras`` (:func:`mean_compensations`; the training cameras, or without them views around the
    content, :func:`render3d.camera_paths.framing.views_around`), for PLY and ``.splat`` files and browser renderers.

    Examples:
        >>> from render3d.cameras import Cameras, intrinsics_matrix, look_at
        >>> from render3d.splat.model import init_params
        >>> from render3d.splat.render import RasterSettings
        >>> generator = torch.Generator().manual_seed(0)
        >>> points, colors = torch.rand(50, 3, generator=generator) - 0.5, torch.rand(50, 3, generator=generator)
        >>> model = GaussianSplats(init_params(points, colors, 0), 0, settings=RasterSettings(antialiased=True))
        >>> c2w = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
        >>> baked = baked_for_classic_renderers(model, Cameras(intrinsics_matrix(20.0, 20.0, 16.0, 12.0), c2w, width=32, height=24))
        >>> baked.settings.antialiased, bool((baked.activated()["opacities"] <= model.activated()["opacities"]).all())
        (False, True)
    """
    if not model.settings.antialiased:
        return model
    if cameras is None:
        from render3d.camera_paths.framing import views_around

        cameras = views_around(model.content_bounds())
    factor = mean_compensations(model, cameras).to(model.params["opacities"].device)
    opacities = torch.sigmoid(model.params["opacities"].detach()) * factor
    params = nn.ParameterDict({k: nn.Parameter(v.detach().clone()) for k, v in model.params.items()})
    params["opacities"] = nn.Parameter(torch.logit(opacities.clamp(1e-6, 1 - 1e-6)))
    baked = GaussianSplats(params, model.max_sh_degree, model.backend, model.background,
                           replace(model.settings, antialiased=False))
    baked.active_sh_degree = model.active_sh_degree
    return baked

