"""What a scene model is, and what else it may be able to do (capabilities).

Every scene model implements :class:`SceneModel`: ``render(cameras, mode)`` and the
``background`` it composites on. The viewer, exporters and eval use only that, plus
runtime-checkable capability protocols that they test with ``isinstance``, never a
method's class or private attributes:

=================  ============================================  =================================
capability         what the model provides                        who asks
=================  ============================================  =================================
:class:`HasGaussians`  ``gaussians()``: its 3D Gaussians           PLY / .splat / point-cloud export,
                                                                   the browser splat renderer
:class:`Croppable`     ``cropped(box)``: an exact crop             crop box, path crops
:class:`Meshable`      ``extract_mesh(resolution)``: its own mesh  mesh export (else TSDF fusion)
:class:`HasNormals`    ``render(cameras, "normal")`` fills         the viewer's normal mode
                       ``extras["normal"]``
:class:`Bounded`       ``content_bounds()``: the box holding it    framing views of files without
                                                                   cameras (a .ply, a lost dataset)
:class:`HasDensity`    ``density(points)``: volume density        the occlusion regulariser
:class:`FrequencyLimited` ``set_frequency_limit(fraction)``        frequency annealing (FreeNeRF)
:class:`Previewable`   ``render_preview(cameras, mode)``: a        the viewer's frames while the
                       cheaper, coarser render                     camera moves
:class:`PoseDifferentiable` ``render_corrected(cameras,         ``eval --refine-test-poses``
                       transforms)``: differentiable in the pose
=================  ============================================  =================================

A new method implements what it can; nothing outside its folder changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from render3d.cameras import Cameras, qvec_to_rotmat


@dataclass
class RenderOutput:
    """Images of ``C`` cameras.

    Attributes:
        rgb: ``[C, H, W, 3]`` in [0, 1], composited on the model's background.
        depth: ``[C, H, W, 1]`` expected z-depth along the camera axis (0 where empty).
        alpha: ``[C, H, W, 1]`` accumulated opacity.
        extras: outputs a mode asked for beyond these (``normal``: ``[C, H, W, 3]`` world-space
            unit normals, 0 where empty).
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class SceneModel(Protocol):
    """A trained (or training) scene that can be rendered from any camera.

    ``mode`` is ``rgb``, ``depth``, ``alpha`` or ``normal``. ``rgb``, ``depth`` and
    ``alpha`` come out of every render (one pass gives all three); a mode beyond them
    (``normal``) is computed only when asked for, into ``extras``.
    """

    background: Tensor  # [3] RGB in [0, 1] that ``rgb`` is composited on

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """Render ``cameras`` without gradients."""
        ...


@dataclass
class Gaussians:
    """3D Gaussians in the reference 3DGS parameterisation (raw values, as stored in its PLY files).

    Attributes:
        means: ``[N, 3]`` centres.
        log_scales: ``[N, 3]`` log of the per-axis standard deviations.
        quats: ``[N, 4]`` rotations (w, x, y, z), not necessarily normalised.
        opacity_logits: ``[N]`` inverse-sigmoid opacities.
        sh: ``[N, K, 3]`` spherical-harmonics coefficients, ``K = (degree + 1)^2``; ``sh[:, 0]`` is the DC colour.
    """

    means: Tensor
    log_scales: Tensor
    quats: Tensor
    opacity_logits: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    def opacities(self) -> Tensor:
        """``[N]`` opacities in [0, 1]."""
        return torch.sigmoid(self.opacity_logits)

    def rgb(self) -> Tensor:
        """``[N, 3]`` view-independent (DC) colours in [0, 1]."""
        from render3d.splat.sh import sh_to_rgb

        return sh_to_rgb(self.sh[:, 0]).clamp(0, 1)

    def covariances(self) -> Tensor:
        """``[N, 3, 3]`` world-space covariances ``R S S^T R^T``."""
        M = qvec_to_rotmat(self.quats) * torch.exp(self.log_scales)[:, None, :]
        return M @ M.transpose(1, 2)


@runtime_checkable
class HasGaussians(Protocol):
    """A model made of 3D Gaussians."""

    @property
    def num_gaussians(self) -> int: ...

    def gaussians(self, live: bool = False) -> Gaussians:
        """Its Gaussians: detached copies, or with ``live`` the trained tensors themselves (for regularisers)."""
        ...


@runtime_checkable
class Croppable(Protocol):
    """A model that can limit itself exactly to a world box."""

    def cropped(self, box: Tensor) -> SceneModel:
        """A copy holding only what lies in ``box [[min], [max]]``."""
        ...


@runtime_checkable
class Meshable(Protocol):
    """A model with its own mesh route (NeRF: density + marching cubes)."""

    def extract_mesh(self, resolution: int) -> Any:
        """A coloured ``trimesh.Trimesh`` at about ``resolution`` voxels per side."""
        ...


@runtime_checkable
class HasNormals(Protocol):
    """A model whose ``render(cameras, mode="normal")`` returns ``extras["normal"]``."""

    def render_normals(self, cameras: Cameras) -> Tensor:
        """``[C, H, W, 3]`` world-space unit normals, 0 where empty."""
        ...


@runtime_checkable
class Bounded(Protocol):
    """A model that knows where its content is."""

    def content_bounds(self) -> Tensor:
        """``[2, 3]`` box (min, max) holding the content."""
        ...


@runtime_checkable
class HasDensity(Protocol):
    """A volumetric model whose density can be queried at any point."""

    def density(self, points: Tensor) -> Tensor:
        """Volume density ``[P]`` at world points ``[P, 3]`` (differentiable)."""
        ...


@runtime_checkable
class FrequencyLimited(Protocol):
    """A model whose input encoding can be limited to its low frequencies (FreeNeRF's annealing)."""

    def set_frequency_limit(self, fraction: float) -> None:
        """Use the lowest ``fraction`` (0..1) of the encoding's frequencies or levels; 1 uses all."""
        ...


@runtime_checkable
class Previewable(Protocol):
    """A model with a cheaper, coarser render for frames that are replaced a moment later
    (the viewer's frames while the camera moves): NeRFs march fewer samples and stop rays sooner."""

    def render_preview(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        """Like ``render``, faster and less exact."""
        ...


@runtime_checkable
class PoseDifferentiable(Protocol):
    """A model whose renders are differentiable in the camera pose (:mod:`render3d.pose_correction`).

    A model may also set ``pose_fit_pixels``, how many pixels of a view a pose fit compares each
    step (0, the default: the whole view, rendered with ``pixels=None``): a model that renders ray
    by ray (a NeRF) fits a fixed random subset, a rasteriser the whole image it draws anyway.
    """

    def render_corrected(self, cameras: Cameras, world_transforms: Tensor, pixels: Optional[Tensor] = None) -> Tensor:
        """``rgb [C, H, W, 3]`` of ``cameras`` seeing the world moved by ``world_transforms [C, 4, 4]``; with
        ``pixels [N]`` (flat indices into ``H * W``) only those pixels, ``[C, N, 3]``."""
        ...


def render_preview(model: SceneModel, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
    """``model.render_preview`` where the model is :class:`Previewable`, else its full ``render``."""
    if isinstance(model, Previewable):
        return model.render_preview(cameras, mode)
    return model.render(cameras, mode)
