"""The pseudo views the priors look at.

- :class:`PseudoViews`: random novel cameras near the training cameras (between two of
  them, slightly perturbed), drawn from a seeded generator whose state is saved.
- :func:`patch_camera`: a camera seeing only a square patch of another's image.

Which training views a sparse run keeps is :mod:`render3d.sparse_views.selection`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render3d.camera_paths.interpolation import rotmat_to_quat, slerp
from render3d.cameras import Cameras, qvec_to_rotmat


class PseudoViews:
    """Novel cameras near the training cameras.

    Each lies between a random training camera and one of its ``neighbours`` nearest others:
    its position is interpolated on the sphere around the point the cameras look at (direction
    slerped, distance interpolated, so it never cuts through the scene), its rotation slerped;
    then it is jittered by ``position_noise`` x the cameras' typical distance to that point and
    by ``angle_noise_deg`` about a random axis.
    """

    def __init__(self, cameras: Cameras, seed: int, position_noise: float = 0.05, angle_noise_deg: float = 5.0,
                 neighbors: int = 3) -> None:
        from render3d.camera_paths.framing import scene_frame

        self.cameras = cameras.to("cpu")
        self.quats = rotmat_to_quat(self.cameras.c2w[:, :3, :3]).float()
        centers = self.cameras.centers.double()
        self.focus = scene_frame(self.cameras).center.double()
        gaps = torch.cdist(centers, centers) + torch.eye(len(centers), dtype=torch.float64) * 1e30
        k = max(1, min(neighbors, len(centers) - 1))
        self.nearest = gaps.topk(k, largest=False).indices if len(centers) > 1 else torch.zeros(1, 1, dtype=torch.long)
        self.position_noise = position_noise * float((centers - self.focus).norm(dim=-1).median())
        self.angle_noise = torch.deg2rad(torch.tensor(angle_noise_deg))
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, count: int = 1) -> Cameras:
        """``count`` pseudo cameras with the training cameras' intrinsics and image size."""
        g, n = self.generator, len(self.cameras)
        a = torch.randint(0, n, (count,), generator=g)
        b = self.nearest[a, torch.randint(0, self.nearest.shape[1], (count,), generator=g)]
        t = torch.rand(count, generator=g, dtype=torch.float64)
        offsets = self.cameras.c2w[:, :3, 3].double() - self.focus
        oa, ob = offsets[a], offsets[b]
        ra, rb = oa.norm(dim=-1, keepdim=True), ob.norm(dim=-1, keepdim=True)
        direction = slerp_directions(oa / ra, ob / rb, t)
        position = self.focus + direction * torch.lerp(ra, rb, t[:, None])
        position = position + torch.randn(count, 3, generator=g, dtype=torch.float64) * self.position_noise
        rotation = qvec_to_rotmat(slerp(self.quats[a].double(), self.quats[b].double(), t).float())
        axis = torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=-1)
        angle = torch.randn(count, generator=g) * self.angle_noise
        wobble = qvec_to_rotmat(torch.cat([torch.cos(angle / 2)[:, None], axis * torch.sin(angle / 2)[:, None]], dim=-1))
        c2w = self.cameras.c2w[a].clone().float()
        c2w[:, :3, :3] = wobble @ rotation
        c2w[:, :3, 3] = position.float()
        return Cameras(self.cameras.K[a].clone(), c2w, self.cameras.width, self.cameras.height)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def slerp_directions(u: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """Unit vectors ``[N, 3]`` a fraction ``t [N]`` of the way from ``u`` to ``v`` along the great circle."""
    cos = (u * v).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    sin = torch.sin(angle)
    t = t[:, None].to(u)
    straight = sin.abs() < 1e-6  # (anti)parallel: interpolate linearly and renormalise
    wu = torch.where(straight, 1 - t, torch.sin((1 - t) * angle) / sin.clamp_min(1e-12))
    wv = torch.where(straight, t, torch.sin(t * angle) / sin.clamp_min(1e-12))
    return torch.nn.functional.normalize(wu * u + wv * v, dim=-1)


def patch_camera(cameras: Cameras, size: int, generator: torch.Generator) -> Cameras:
    """Each camera limited to a random ``size`` x ``size`` patch of its image (principal point shifted)."""
    size = min(size, cameras.width, cameras.height)
    n = len(cameras)
    x0 = torch.randint(0, cameras.width - size + 1, (n,), generator=generator).float()
    y0 = torch.randint(0, cameras.height - size + 1, (n,), generator=generator).float()
    K = cameras.K.clone()
    K[:, 0, 2] -= x0.to(K)
    K[:, 1, 2] -= y0.to(K)
    return Cameras(K, cameras.c2w, size, size, cameras.distortion)
