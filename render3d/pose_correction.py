"""Per-image camera pose correction, learned in training (``--splat.pose-opt``) or fitted to a test view.

Poses from structure from motion are a little off. :class:`PoseCorrection` holds, for each
training image ``i``, a rigid correction ``Δ_i`` in that camera's own frame, applied on the
right of its camera-to-world matrix::

    c2w_i' = c2w_i · Δ_i,    Δ_i = [exp(ω_i) | s · τ_i],    (ω_i, τ_i) = deltas[i]  (6 numbers)

``ω`` is an axis-angle rotation (radians) and ``τ`` a translation in units of the scene scale
``s``; every row starts at zero (the identity), as in nerfstudio's SO3xR3 camera optimiser.

Renderers that cannot differentiate through their camera (the compiled CPU projection) get
the same image by moving the world instead: ``world_transforms`` gives, for each corrected
camera, the rigid map ``D`` with ``viewmat · D = viewmat'`` (see :func:`world_transforms`).
The one difference: the colour's view direction is taken in the moved world, so
view-dependent colour lags the correction's rotation (a fraction of a degree for the
corrections training learns).

:func:`fit_poses` fits a correction to each of some views against a frozen model: the test-pose
refinement of ``render3d eval --refine-test-poses`` (gsplat's and nerfbaselines' protocol).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.appearance import RowAdam
from render3d.cameras import Cameras
from render3d.errors import Render3DError


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices ``[B, 3, 3]`` of axis-angle vectors ``omega [B, 3]`` (Rodrigues; smooth at 0)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # [B, 1, 1]
    small = theta2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)  # no 0/0 (nor its NaN gradient) where a series is used
    theta = torch.sqrt(safe2)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / safe2)
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


def correction_matrices(deltas: Tensor, scale: float = 1.0) -> Tensor:
    """Camera-frame corrections ``Δ [B, 4, 4]`` of ``deltas [B, 6]`` (axis-angle, translation / ``scale``)."""
    out = torch.zeros(deltas.shape[0], 4, 4, dtype=deltas.dtype, device=deltas.device)
    out[:, :3, :3] = so3_exp(deltas[:, :3])
    out[:, :3, 3] = deltas[:, 3:] * scale
    out[:, 3, 3] = 1.0
    return out


def corrected_c2w(c2w: Tensor, deltas: Tensor, scale: float = 1.0) -> Tensor:
    """``c2w [B, 4, 4] · Δ(deltas [B, 6])``: the corrected camera-to-world matrices."""
    return c2w @ correction_matrices(deltas.to(c2w), scale)


def camera_motions(c2w: Tensor, deltas: Tensor, scale: float = 1.0) -> Tensor:
    """Rigid maps ``M [B, 4, 4]`` that carry each camera's rays to its corrected camera's: ``M = c2w · Δ · c2w⁻¹``.

    A ray ``(o, d)`` of camera ``b`` becomes ``(M o, M_R d)`` (``M_R`` the rotation part), the
    same pixel's ray of ``c2w · Δ``. The inverse of :func:`world_transforms`. Differentiable in ``deltas``.
    """
    return corrected_c2w(c2w, deltas, scale) @ torch.linalg.inv(c2w)


def move_rays(motions: Tensor, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Rays ``origins, directions [R, 3]`` carried by their own rigid maps ``motions [R, 4, 4]``
    (:func:`camera_motions` gathered per ray)."""
    rotation = motions[:, :3, :3]
    moved_origins = (rotation @ origins[:, :, None])[..., 0] + motions[:, :3, 3]
    return moved_origins, (rotation @ directions[:, :, None])[..., 0]


def world_transforms(c2w: Tensor, deltas: Tensor, scale: float = 1.0) -> Tensor:
    """Rigid maps ``D [B, 4, 4]`` that move the world so the uncorrected camera sees what the corrected one does.

    With ``V = c2w⁻¹`` and ``V' = (c2w · Δ)⁻¹``: ``V · D = V'``, so ``D = c2w · Δ⁻¹ · c2w⁻¹``.
    Differentiable in ``deltas``.
    """
    delta = correction_matrices(deltas.to(c2w), scale)
    rot_t = delta[:, :3, :3].transpose(1, 2)
    inverse = torch.zeros_like(delta)
    inverse[:, :3, :3] = rot_t
    inverse[:, :3, 3:] = -rot_t @ delta[:, :3, 3:]
    inverse[:, 3, 3] = 1.0
    return c2w @ inverse @ torch.linalg.inv(c2w)


def rotation_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``[B, 4]`` (w, x, y, z) of rotations ``[B, 3, 3]`` under 180 degrees (differentiable)."""
    trace = rotation[:, 0, 0] + rotation[:, 1, 1] + rotation[:, 2, 2]
    w = 0.5 * torch.sqrt(torch.clamp(1.0 + trace, min=1e-12))
    xyz = torch.stack([rotation[:, 2, 1] - rotation[:, 1, 2], rotation[:, 0, 2] - rotation[:, 2, 0],
                       rotation[:, 1, 0] - rotation[:, 0, 1]], dim=-1) / (4 * w[:, None])
    return torch.cat([w[:, None], xyz], dim=-1)


def quaternion_product(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton products ``a ⊗ b`` of quaternions ``[..., 4]`` (w, x, y, z); broadcasts."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


class PoseCorrection(nn.Module):
    """A learned rigid correction per training image (see the module docstring).

    Args:
        num_images: training images, indexed as ``Batch.indices`` index them.
        scale: the scene scale; translations are learned in its units.

    Examples:
        >>> correction = PoseCorrection(4, scale=2.0)
        >>> c2w = torch.eye(4).expand(2, 4, 4)
        >>> torch.allclose(correction.corrected_c2w(c2w, torch.tensor([0, 3])), c2w)   # the identity until trained
        True
    """

    def __init__(self, num_images: int, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.deltas = nn.Parameter(torch.zeros(num_images, 6))  # axis-angle (rad), translation / scale

    def _rows(self, indices: Tensor) -> Tensor:
        return self.deltas[indices.to(self.deltas.device)]

    def corrected_c2w(self, c2w: Tensor, indices: Tensor) -> Tensor:
        """Corrected camera-to-world matrices ``[B, 4, 4]`` of the images ``indices [B]``."""
        return corrected_c2w(c2w, self._rows(indices), self.scale)

    def world_transforms(self, c2w: Tensor, indices: Tensor) -> Tensor:
        """:func:`world_transforms` ``[B, 4, 4]`` of the images ``indices [B]`` (differentiable)."""
        return world_transforms(c2w, self._rows(indices), self.scale)

    def camera_motions(self, c2w: Tensor, indices: Tensor) -> Tensor:
        """:func:`camera_motions` ``[B, 4, 4]`` of the images ``indices [B]`` (differentiable)."""
        return camera_motions(c2w, self._rows(indices), self.scale)

    def penalty(self, indices: Tensor) -> Tensor:
        """Mean squared correction of the images ``indices`` (rotation in radians, translation in scene scales)."""
        return (self._rows(indices) ** 2).sum(-1).mean()

    @torch.no_grad()
    def apply(self, cameras: Cameras) -> Cameras:
        """All training ``cameras`` with their corrections applied (detached)."""
        index = torch.arange(len(cameras))
        c2w = self.corrected_c2w(cameras.c2w.to(self.deltas), index).to(cameras.c2w)
        return Cameras(cameras.K, c2w, cameras.width, cameras.height, cameras.distortion)


def check_pose_options(prefix: str, lr_pose: float, pose_reg: float, pose_opt_start: float) -> None:
    """One line naming the option (``--PREFIX.lr-pose`` ...) for a bad pose-learning value.

    Raises:
        Render3DError: ``lr_pose`` is not above 0, ``pose_reg`` below 0, or ``pose_opt_start`` outside [0, 1).
    """
    if not (math.isfinite(lr_pose) and lr_pose > 0):
        raise Render3DError(f"--{prefix}.lr-pose {lr_pose} must be a number above 0")
    if not (math.isfinite(pose_reg) and pose_reg >= 0):
        raise Render3DError(f"--{prefix}.pose-reg {pose_reg} must be a number of at least 0")
    if not (math.isfinite(pose_opt_start) and 0 <= pose_opt_start < 1):
        raise Render3DError(f"--{prefix}.pose-opt-start {pose_opt_start} must be at least 0 and below 1")


class PoseLearning:
    """A :class:`PoseCorrection` as a method trains it: its lazy Adam (:class:`~render3d.appearance.RowAdam`:
    an image's row moves only in the steps that draw it), its start and its learning-rate decay.

    The corrections stay at the given poses for the first ``start`` share of the run, then learn at
    ``lr``, decaying tenfold to the end of the run.

    Args:
        num_images: training images.
        scale: the scene scale (translations are learned in its units).
        lr: learning rate where the corrections start.
        start: share of the run (0-1) before they start.
        total_steps: the run's (planned) steps.
        device: where the corrections live.

    Examples:
        >>> learning = PoseLearning(3, scale=1.0, lr=1e-2, start=0.5, total_steps=100, device=torch.device("cpu"))
        >>> learning.active(10), learning.active(50)
        (False, True)
    """

    def __init__(self, num_images: int, scale: float, lr: float, start: float, total_steps: int, device: torch.device) -> None:
        self.correction = PoseCorrection(num_images, scale).to(device)
        self.lr = lr
        self.total_steps = total_steps
        self.start_step = int(start * total_steps)
        self.optimizer = RowAdam(self.correction.parameters(), lr=lr)

    def active(self, step: int) -> bool:
        """Whether the corrections learn (and apply) at ``step``."""
        return step >= self.start_step

    def set_learning_rate(self, step: int) -> None:
        """The learning rate of ``step``: ``lr`` at the start, decaying 10x to the end of the run."""
        span = max(self.total_steps - self.start_step, 1)
        fraction = min(max(step - self.start_step, 0), span) / span
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * 0.1 ** fraction

    def refined(self, cameras: Cameras) -> Cameras:
        """The training ``cameras`` with their corrections."""
        return self.correction.apply(cameras)

    def state_dict(self, cameras: Cameras) -> dict:
        """Checkpoint entries: the corrections with their optimiser (``poses``) and the refined poses (``train_c2w``:
        the viewer's frustums and ``render --path train`` read them)."""
        return {"poses": {"deltas": self.correction.deltas.detach().cpu(), "optimizer": self.optimizer.state_dict()},
                "train_c2w": self.refined(cameras).c2w.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s ``poses`` entry (where a checkpoint has one)."""
        if "poses" not in state:
            return
        with torch.no_grad():
            self.correction.deltas.copy_(state["poses"]["deltas"])
        self.optimizer.load_state_dict(state["poses"]["optimizer"])


#: ``render(cameras [1], world_transforms [1, 4, 4], pixels=None) -> rgb [1, H, W, 3]`` (``[1, N, 3]`` at ``pixels
#: [N]``, flat indices), differentiable in the transforms: a :class:`~render3d.protocol.PoseDifferentiable`'s
#: ``render_corrected``.
CorrectedRender = Callable[..., Tensor]


def fit_poses(render: CorrectedRender, cameras: Cameras, targets: Callable[[int], Tensor], scale: float,
              steps: int = 100, lr: float = 5e-3, pixels: int = 0, seed: int = 0) -> Tensor:
    """Fit a correction to each camera against a frozen model; returns ``deltas [C, 6]``.

    Each view is fitted alone with Adam on the L1 photometric error, its learning rate decaying
    tenfold over ``steps``. Each view keeps the correction with the lowest error seen, the given
    pose (zero) included, so a fit that wanders off (a blurry scene, a view that sees little of
    it) never leaves a view worse than it started.

    Args:
        render: renders one camera through a world transform (:data:`CorrectedRender`).
        cameras: ``C`` views to refine.
        targets: ``targets(i)`` is view ``i``'s image ``[H, W, 3]`` in [0, 1].
        scale: the scene scale (translations are fitted in its units).
        pixels: compare only this many pixels of each view, a fixed random subset (drawn from ``seed``), every step;
            0 or at least the view's size: the whole view.
    """
    fitted = torch.zeros(len(cameras), 6)
    generator = torch.Generator().manual_seed(seed)
    for i in range(len(cameras)):
        camera = cameras[i]
        target = targets(i).to(camera.device)
        subset = None
        if 0 < pixels < target.shape[0] * target.shape[1]:
            subset = torch.randperm(target.shape[0] * target.shape[1], generator=generator)[:pixels].to(camera.device)
            target = target.reshape(-1, 3)[subset]
        delta = torch.zeros(1, 6, device=camera.device, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=lr)
        best, best_loss = torch.zeros(6), float("inf")
        for step in range(steps + 1):
            transforms = world_transforms(camera.c2w, delta, scale)
            rgb = render(camera, transforms) if subset is None else render(camera, transforms, subset)
            loss = F.l1_loss(rgb[0], target)
            error = float(loss.detach())
            if error < best_loss:  # the error of the correction before this step's update
                best, best_loss = delta.detach()[0].cpu().clone(), error
            if step == steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.1 ** (step / max(1, steps))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        fitted[i] = best
    return fitted


def pose_changes(refined_c2w: Tensor, given_c2w: Tensor) -> tuple[Tensor, Tensor]:
    """Per camera, the rotation (degrees) and the distance between ``refined_c2w`` and ``given_c2w`` ``[C, 4, 4]``."""
    relative = refined_c2w[:, :3, :3].transpose(1, 2) @ given_c2w[:, :3, :3]
    cosine = ((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine)), (refined_c2w[:, :3, 3] - given_c2w[:, :3, 3]).norm(dim=-1)


def align_poses(c2w: Tensor, reference_c2w: Tensor) -> Tensor:
    """``c2w [C, 4, 4]`` moved by the one rigid map that best lays its camera centres on ``reference_c2w``'s.

    Pose refinement can move every camera and the scene together without changing a render
    (the gauge freedom), so camera errors are compared after this alignment (Kabsch on the
    camera centres, as BARF's evaluation does). Needs three cameras or more.
    """
    centres, reference = c2w[:, :3, 3], reference_c2w[:, :3, 3]
    mean, reference_mean = centres.mean(0), reference.mean(0)
    u, _, vt = torch.linalg.svd((reference - reference_mean).T @ (centres - mean))
    sign = torch.ones(3, dtype=c2w.dtype, device=c2w.device)
    sign[-1] = torch.sign(torch.linalg.det(u @ vt))
    rotation = u @ torch.diag(sign) @ vt
    aligned = c2w.clone()
    aligned[:, :3, :3] = rotation @ c2w[:, :3, :3]
    aligned[:, :3, 3] = (centres - mean) @ rotation.T + reference_mean
    return aligned


def write_refined_poses(path: Path, split: Any, refined: Cameras) -> None:
    """Write the refined training poses next to the given ones (``refined_poses.json`` of a run; OpenCV camera-to-world)."""
    from render3d.files import write_json

    given = split.cameras.c2w.detach().cpu().double()
    c2w = refined.c2w.detach().cpu().double()
    degrees, distances = pose_changes(c2w, given)
    frames = [{"name": split.names[i] if i < len(split.names) else str(i), "c2w": c2w[i].tolist(), "given_c2w": given[i].tolist(),
               "rotation_change_degrees": round(float(degrees[i]), 5), "translation_change": round(float(distances[i]), 6)}
              for i in range(len(c2w))]
    write_json({"convention": "OpenCV camera-to-world (+x right, +y down, +z forward), the dataset's world frame",
                "frames": frames}, path)
