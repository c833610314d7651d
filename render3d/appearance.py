"""Per-image appearance learned in training: exposure and white balance (``--splat.appearance exposure``,
``--nerf.appearance exposure``) or a per-image latent code fed to the Gaussians' colours
(``--splat.appearance embedding``, ``--nerf.appearance embedding``: on each ray's colour, with the
point where the ray ends as the position). The splat and NeRF methods build theirs with :func:`make_appearance`
and :func:`appearance_optimizers` and checkpoint them with :func:`appearance_state`.

Phones change exposure and white balance from frame to frame; a scene fitted to every frame
as it is bakes those changes into floaters and view-dependent colour. :class:`ExposureCorrection`
holds, for each training image ``i``, a log-gain ``g_i`` per colour channel (exposure times
white balance) and corrects that image's render before the loss::

    rgb_i' = clamp(exp(g_i) * rgb_i, 0, 1),   with mean_j g_j = 0

A bias per channel, tried as well, fitted noise: on the default scene with changed exposure
it scored no better than no correction (``bench/bench_capture.py --case exposure``, 600 steps).

The log-gains are kept zero-mean over the training images, so the corrections average to the identity:
a colour cast common to every image stays in the scene (it cannot drift into the
correction), and what renders, evaluation and exports show, with no correction, is the
average appearance of the training images.

:class:`AppearanceEmbedding` is the general form, for light that changes more than a camera's
gain can say (clouds, shadows, a lamp switched on): nerfacto's and gsplat's ``app_opt`` idea,
a learned latent code ``e_i`` per training image that the colour model reads. Here it acts on
each Gaussian's SH colour ``c`` seen along the view direction ``d`` from position ``x``::

    c_i' = c + A(c, d, x / s) e_i,    with mean_j e_j = 0

``A`` is a small MLP giving a ``3 x D`` matrix, ``s`` the scene scale. The correction is linear in
the code, so with the codes kept zero-mean the corrections average to zero over the training
images, exactly, for every Gaussian and direction: as with ``exposure``, no cast moves into the
scene, and renders, evaluation and exports (the code ``0``) show the average appearance, with
nothing to bake.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``--splat.appearance`` values.
APPEARANCE_MODES = ("none", "exposure", "embedding")


class ExposureCorrection(nn.Module):
    """Zero-mean per-image colour gain (see the module docstring).

    The zero mean is kept by :meth:`recentre` after every optimiser step (a projection), not
    inside :meth:`forward`, so a step's gradient reaches only the rows of the images it saw;
    :class:`RowAdam` then moves only those rows.

    Args:
        num_images: training images, indexed as ``Batch.indices`` index them.

    Examples:
        >>> correction = ExposureCorrection(4)
        >>> rgb = torch.rand(2, 8, 8, 3)
        >>> torch.equal(correction(rgb, torch.tensor([0, 3])), rgb)   # the identity until trained
        True
    """

    def __init__(self, num_images: int) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.zeros(num_images, 3))  # log-gain per colour channel

    @torch.no_grad()
    def recenter(self) -> None:
        """Remove the mean over the images from every log-gain (call after each optimiser step)."""
        self.values -= self.values.mean(0, keepdim=True)

    def forward(self, rgb: Tensor, indices: Tensor) -> Tensor:
        """``rgb [B, H, W, 3]`` of the images ``indices [B]``, corrected."""
        gain = torch.exp(self.values[indices.to(self.values.device)])[:, None, None, :]
        return (rgb * gain).clamp(0.0, 1.0)  # a camera saturates: a brighter exposure clips as the photo did


class AppearanceEmbedding(nn.Module):
    """Zero-mean per-image latent codes that modulate the Gaussians' colours, or a NeRF's ray colours
    (:meth:`on_rays`; see the module docstring).

    Args:
        num_images: training images, indexed as ``Batch.indices`` index them.
        scene_scale: the scene's scale ``s``; positions reach the MLP as ``x / s``.
        dim: length ``D`` of each image's code.
        hidden: width of the MLP's two hidden layers.

    Examples:
        >>> embedding = AppearanceEmbedding(4, scene_scale=1.0)
        >>> colors, means, centers = torch.rand(2, 100, 3), torch.randn(100, 3), torch.randn(2, 3)
        >>> torch.equal(embedding(colors, means, centers, torch.tensor([0, 3])), colors)   # the identity until trained
        True
    """

    def __init__(self, num_images: int, scene_scale: float, dim: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.scene_scale = float(scene_scale)
        self.codes = nn.Parameter(torch.zeros(num_images, dim))  # one row per training image, learned with RowAdam
        self.mlp = nn.Sequential(nn.Linear(9, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3 * dim))

    @torch.no_grad()
    def recenter(self) -> None:
        """Remove the mean over the images from every code (call after each optimiser step)."""
        self.codes -= self.codes.mean(0, keepdim=True)

    def forward(self, colors: Tensor, means: Tensor, centers: Tensor, indices: Tensor) -> Tensor:
        """Colours ``[C, N, 3]`` of ``N`` Gaussians at ``means [N, 3]`` seen from ``centers [C, 3]`` by the training images
        ``indices [C]``, corrected by those images' codes (``[C, N, 3]``; the input where a code is 0)."""
        directions = F.normalize(means[None] - centers[:, None], dim=-1)
        codes = self.codes[indices.to(self.codes.device)][:, None].expand(-1, means.shape[0], -1)  # [C, N, D]
        return self.correct(colors, directions, means[None].expand_as(directions), codes)

    def on_rays(self, rgb: Tensor, points: Tensor, directions: Tensor, indices: Tensor) -> Tensor:
        """Ray colours ``rgb [R, 3]`` of the training images ``indices [R]`` (the NeRF methods), corrected by those
        images' codes; ``points [R, 3]`` is where each ray ends (its expected depth), ``directions [R, 3]`` its direction."""
        return self.correct(rgb, F.normalize(directions, dim=-1), points, self.codes[indices.to(self.codes.device)])

    def correct(self, colors: Tensor, directions: Tensor, positions: Tensor, codes: Tensor) -> Tensor:
        """``colors + A(colors, directions, positions / s) codes``: all ``[..., 3]`` but ``codes [..., D]``."""
        features = torch.cat([colors, directions, positions / self.scene_scale], dim=-1)
        matrices = self.mlp(features).unflatten(-1, (3, -1))  # [..., 3, D]
        return colors + (matrices @ codes[..., None])[..., 0]


def make_appearance(mode: str, num_images: int, scene_scale: float) -> Optional[nn.Module]:
    """The per-image appearance module of ``--splat.appearance mode`` for ``num_images`` training images (None for ``none``)."""
    if mode == "exposure":
        return ExposureCorrection(num_images)
    if mode == "embedding":
        return AppearanceEmbedding(num_images, scene_scale)
    return None


def appearance_optimizers(appearance: Optional[nn.Module], lr: float, lr_mlp: Optional[float] = None) -> dict[str, torch.optim.Optimizer]:
    """Optimisers of an appearance module: :class:`RowAdam` on its per-image rows (``appearance``) and, for
    :class:`AppearanceEmbedding`, Adam on its MLP (``appearance_mlp``, at ``lr_mlp``, which it requires)."""
    if appearance is None:
        return {}
    if isinstance(appearance, AppearanceEmbedding):
        if lr_mlp is None:
            raise ValueError("an AppearanceEmbedding needs lr_mlp, the learning rate of its MLP")
        return {"appearance": RowAdam([appearance.codes], lr=lr), "appearance_mlp": torch.optim.Adam(appearance.mlp.parameters(), lr=lr_mlp)}
    return {"appearance": RowAdam(appearance.parameters(), lr=lr)}


def appearance_state(appearance: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> dict:
    """A checkpoint entry for an appearance module and its optimisers (:func:`load_appearance_state` reads it)."""
    return {"state": {k: v.detach().cpu() for k, v in appearance.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()}}


def load_appearance_state(appearance: nn.Module, optimizers: dict[str, torch.optim.Optimizer], saved: dict) -> None:
    """Restore :func:`appearance_state` output into ``appearance`` and its freshly made ``optimizers``. Also reads the
    entry of checkpoints from before ``--splat.appearance embedding`` (exposure only: ``values`` and ``optimizer``)."""
    if "values" in saved:
        saved = {"state": {"values": saved["values"]}, "optimizers": {"appearance": saved["optimizer"]}}
    appearance.load_state_dict(saved["state"])
    for k, opt in optimizers.items():
        opt.load_state_dict(saved["optimizers"][k])


class RowAdam(torch.optim.Optimizer):
    """Adam on a table ``[rows, D]`` that moves only the rows with a non-zero gradient (lazy Adam).

    Each image's row sees a gradient only in the steps that drew that image; plain Adam would
    keep moving every row on its old momentum in all the other steps (about ten times the
    learning rate per visit), which makes per-image values overshoot. Here each row keeps its
    own step count and moments, as ``torch.optim.SparseAdam`` does for sparse gradients.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows = p.grad.abs().sum(dim=1) > 0
                if not rows.any():
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                g = p.grad[rows]
                t = state["step"][rows] + 1
                m = state["exp_avg"][rows] * beta1 + (1 - beta1) * g
                v = state["exp_avg_sq"][rows] * beta2 + (1 - beta2) * g * g
                state["step"][rows], state["exp_avg"][rows], state["exp_avg_sq"][rows] = t, m, v
                m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
                p[rows] -= group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
        return None
