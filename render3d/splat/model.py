"""The Gaussian scene model: parameters, initialisation and ``render(cameras, mode)``."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from render3d.cameras import Cameras
from render3d.protocol import Gaussians, RenderOutput
from render3d.splat.render import ColorFn, RasterSettings, rasterize
from render3d.splat.sh import num_sh_bases, rgb_to_sh

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def knn_mean_distance(points: Tensor, k: int = 3) -> Tensor:
    """Mean distance from each point to its ``k`` nearest neighbours (scipy's k-d tree)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    dist, _ = cKDTree(pts).query(pts, k=min(k + 1, len(pts)))
    return torch.from_numpy(dist[:, 1:].mean(-1)).float() if len(pts) > 1 else torch.ones(len(pts))


def init_params(
    points: Tensor,
    colors: Tensor,
    sh_degree: int,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
) -> nn.ParameterDict:
    """Gaussians at ``points [N, 3]`` with ``colors [N, 3]`` in [0, 1], isotropic scales from kNN distance."""
    n = len(points)
    dist = knn_mean_distance(points).clamp_min(1e-7)
    scales = torch.log(dist * init_scale)[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    sh = torch.zeros(n, num_sh_bases(sh_degree), 3)
    sh[:, 0] = rgb_to_sh(colors)
    return nn.ParameterDict(
        {
            "means": nn.Parameter(points.float().clone()),
            "scales": nn.Parameter(scales),
            "quats": nn.Parameter(quats),
            "opacities": nn.Parameter(torch.logit(torch.full((n,), init_opacity))),
            "sh0": nn.Parameter(sh[:, :1].contiguous()),
            "shN": nn.Parameter(sh[:, 1:].contiguous()),
        }
    )


def random_points(bounds: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` points uniform in the box ``bounds [2, 3]`` with random colours."""
    lo, hi = bounds[0].float(), bounds[1].float()
    points = lo + (hi - lo) * torch.rand(count, 3, generator=generator)
    return points, torch.rand(count, 3, generator=generator)


class GaussianSplats(nn.Module):
    """3D Gaussians with SH colour.

    Implements :class:`render3d.protocol.SceneModel` and the capabilities
    :class:`~render3d.protocol.HasGaussians`, :class:`~render3d.protocol.Croppable`,
    :class:`~render3d.protocol.HasNormals` and :class:`~render3d.protocol.Bounded`.

    ``params`` holds raw (unconstrained) tensors: log-scales, (w, x, y, z) quaternions,
    opacity logits, SH DC ``sh0 [N, 1, 3]`` and higher bands ``shN [N, K-1, 3]``.
    """

    def __init__(
        self,
        params: nn.ParameterDict,
        sh_degree: int,
        backend: str = "torch",
        background: Optional[Tensor] = None,
        settings: Optional[RasterSettings] = None,
    ) -> None:
        super().__init__()
        self.params = params
        self.max_sh_degree = sh_degree
        self.active_sh_degree = sh_degree
        self.backend = backend
        self.settings = settings or RasterSettings()
        self.register_buffer("background", torch.ones(3) if background is None else background.float().clone())

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def activated(self) -> dict[str, Tensor]:
        """Parameters in rasteriser form: linear scales, normalised quaternions, opacities in [0, 1]."""
        p = self.params
        return {
            "means": p["means"],
            "quats": p["quats"],
            "scales": torch.exp(p["scales"]),
            "opacities": torch.sigmoid(p["opacities"]),
            "coeffs": torch.cat([p["sh0"], p["shN"]], dim=1),
        }

    def gaussians(self, live: bool = False) -> Gaussians:
        """The Gaussians (the :class:`~render3d.protocol.HasGaussians` capability): detached, or the trained tensors."""
        p = {k: (v if live else v.detach()) for k, v in self.params.items()}
        return Gaussians(p["means"], p["scales"], p["quats"], p["opacities"], torch.cat([p["sh0"], p["shN"]], dim=1))

    def content_bounds(self) -> Tensor:
        """The box holding the central 98% of the finite Gaussian centres (the unit cube when there are none)."""
        means = self.params["means"].detach().float().cpu()
        means = means[torch.isfinite(means).all(-1)]
        if len(means) == 0:
            return torch.tensor([[-1.0] * 3, [1.0] * 3])
        sample = means[torch.randperm(len(means), generator=torch.Generator().manual_seed(0))[:100_000]]
        return torch.quantile(sample, torch.tensor([0.01, 0.99]), dim=0)

    def rasterize(
        self, cameras: Cameras, background: Optional[Tensor] = None, sh_degree: Optional[int] = None, normals: bool = False,
        world_transforms: Optional[Tensor] = None, color_fn: Optional[ColorFn] = None,
    ) -> tuple[Tensor, Tensor, Tensor, dict]:
        """Render ``cameras`` and return gsplat-style ``(colors, depth, alphas, info)`` (used in training);
        ``normals`` adds ``info["normals"]``; ``world_transforms [C, 4, 4]`` corrects the cameras' poses
        (:mod:`render3d.pose_correction`); ``color_fn`` changes the Gaussians' colours (see
        :func:`render3d.splat.render.rasterize`)."""
        a = self.activated()
        cams = cameras.to(a["means"].device)
        return rasterize(
            self.backend,
            a["means"],
            a["quats"],
            a["scales"],
            a["opacities"],
            a["coeffs"],
            self.active_sh_degree if sh_degree is None else sh_degree,
            cams.viewmats,
            cams.K,
            cams.width,
            cams.height,
            self.settings,
            self.background if background is None else background,
            normals,
            None if world_transforms is None else world_transforms.to(a["means"]),
            color_fn,
        )

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """Render ``cameras``: rgb, depth and alpha from one pass; normals only for ``mode="normal"``.

        Examples:
            >>> from render3d.cameras import Cameras, intrinsics_matrix, look_at
            >>> generator = torch.Generator().manual_seed(0)
            >>> points, colors = torch.rand(200, 3, generator=generator) - 0.5, torch.rand(200, 3, generator=generator)
            >>> model = GaussianSplats(init_params(points, colors, sh_degree=0), sh_degree=0, backend="torch")
            >>> c2w = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
            >>> cameras = Cameras(intrinsics_matrix(20.0, 20.0, 16.0, 12.0), c2w, width=32, height=24)
            >>> out = model.render(cameras)
            >>> out.rgb.shape, out.depth.shape, out.alpha.shape
            (torch.Size([1, 24, 32, 3]), torch.Size([1, 24, 32, 1]), torch.Size([1, 24, 32, 1]))
            >>> model.render(cameras, mode="normal").extras["normal"].shape
            torch.Size([1, 24, 32, 3])

            A trained model comes from a run folder, a checkpoint, a 3DGS ``.ply`` or a ``.splat`` file:

            >>> from render3d.runs import load_run
            >>> model = load_run("runs/lego-splat-20250101-120000").model  # doctest: +SKIP
        """
        with torch.no_grad():
            colors, depth, alphas, info = self.rasterize(cameras, normals=mode == "normal")
        extras = {"normal": info["normals"]} if mode == "normal" else {}
        return RenderOutput(rgb=colors.clamp(0, 1), depth=depth * (alphas > 1e-3), alpha=alphas, extras=extras)

    #: a pose fit compares whole views (the rasteriser draws every pixel anyway)
    pose_fit_pixels = 0

    def render_corrected(self, cameras: Cameras, world_transforms: Tensor, pixels: Optional[Tensor] = None) -> Tensor:
        """``rgb [C, H, W, 3]`` of ``cameras`` with corrected poses, differentiable in ``world_transforms [C, 4, 4]``
        (the :class:`~render3d.protocol.PoseDifferentiable` capability); ``[C, N, 3]`` at ``pixels [N]`` (flat indices)."""
        rgb = self.rasterize(cameras, world_transforms=world_transforms)[0]
        return rgb if pixels is None else rgb.reshape(rgb.shape[0], -1, 3)[:, pixels.to(rgb.device)]

    def render_normals(self, cameras: Cameras) -> Tensor:
        """World-space unit normals ``[C, H, W, 3]`` (each Gaussian's shortest axis, facing the camera)."""
        return self.render(cameras, mode="normal").extras["normal"]

    def cropped(self, box: Tensor) -> "GaussianSplats":
        """A copy holding only the Gaussians whose centres lie in the box ``[[min], [max]]``."""
        box = torch.as_tensor(box, dtype=torch.float32, device=self.params["means"].device).reshape(2, 3)
        means = self.params["means"].detach()
        keep = ((means >= box[0]) & (means <= box[1])).all(dim=-1)
        params = nn.ParameterDict({k: nn.Parameter(v.detach()[keep].clone()) for k, v in self.params.items()})
        model = GaussianSplats(params, self.max_sh_degree, self.backend, self.background, self.settings)
        model.active_sh_degree = self.active_sh_degree
        return model

    @classmethod
    def from_state(cls, state: dict, backend: str = "torch") -> "GaussianSplats":
        """Rebuild from :meth:`export_state` output (shapes taken from the tensors)."""
        params = nn.ParameterDict({k: nn.Parameter(state["params"][k].float().clone()) for k in PARAM_NAMES})
        settings = RasterSettings(**state.get("settings", {}))
        model = cls(params, state["sh_degree"], backend, state.get("background"), settings)
        model.active_sh_degree = state.get("active_sh_degree", state["sh_degree"])
        return model

    def export_state(self) -> dict:
        """Everything needed to rebuild the model (no optimiser state)."""
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "sh_degree": self.max_sh_degree,
            "active_sh_degree": self.active_sh_degree,
            "background": self.background.cpu(),
            "settings": dict(vars(self.settings)),
        }

