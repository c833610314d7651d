"""Starting points from the training views (plane-sweep stereo, visual hull) and random backgrounds for splats."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from render3d.batches import ViewBatcher
from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.errors import Render3DError
from render3d.nerf.method import NerfConfig
from render3d.sparse_views.points import visual_hull_points
from render3d.sparse_views.stereo import StereoSettings, stereo_points
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer


def cameras_at(eyes: list[list[float]], target: list[float], up: list[float], size: int = 64, focal: float = 60.0) -> Cameras:
    c2w = torch.stack([look_at(torch.tensor(e), torch.tensor(target), torch.tensor(up)) for e in eyes])
    return Cameras(intrinsics_matrix(focal, focal, size / 2, size / 2), c2w, size, size)


def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A busy, non-repeating grey texture on the plane (sums of incommensurate waves)."""
    g = torch.Generator().manual_seed(3)
    freq = torch.rand(12, 2, generator=g) * 14 + 2
    phase = torch.rand(12, generator=g) * 6.28
    waves = torch.sin(x[..., None] * freq[:, 0] + y[..., None] * freq[:, 1] + phase)
    return 0.5 + 0.4 * waves.mean(-1) * 2.5


def plane_views(cams: Cameras) -> torch.Tensor:
    """Each camera's view of the textured plane z = 0 ``[V, H, W, 3]`` in [0, 1]."""
    images = []
    for i in range(len(cams)):
        origins, dirs = cams.generate_rays(i)
        hit = origins - dirs * (origins[..., 2:3] / dirs[..., 2:3])
        images.append(texture(hit[..., 0], hit[..., 1]).clamp(0, 1)[..., None].expand(-1, -1, 3))
    return torch.stack(images)


@pytest.mark.parametrize("layout", ["parallel", "converging", "converging, matched at half size"])
def test_plane_sweep_stereo_puts_the_points_of_a_textured_plane_on_the_plane(layout):
    # three cameras 4 units above the plane z = 0, 0.5-0.8 apart: a forward-facing capture (LLFF's
    # parallel optical axes) or cameras turned toward one point, whose planes of equal depth differ
    if layout == "parallel":
        cams = cameras_at([[0.0, 0.0, 4.0], [0.5, 0.0, 4.0], [0.0, 0.5, 4.0]], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        cams.c2w[1:, :3, :3] = cams.c2w[0, :3, :3]
    else:
        cams = cameras_at([[-0.8, 0.0, 4.0], [0.8, 0.0, 4.0], [0.0, 0.8, 4.0]], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    settings = StereoSettings(max_side=32) if "half" in layout else StereoSettings()
    points, colors = stereo_points(plane_views(cams), cams, near=2.0, far=12.0, settings=settings)
    side = min(64, settings.max_side)
    assert len(points) > 0.3 * 3 * side * side  # most of the (textured, overlapping) pixels survive fusion
    height = points[:, 2].abs()
    assert float(height.median()) < 0.04 and float((height < 0.15).float().mean()) > 0.95
    truth = texture(points[:, 0], points[:, 1]).clamp(0, 1)
    assert float((colors[:, 0] - truth).abs().median()) < (0.05 if side == 64 else 0.15)  # each point keeps its colour there


def test_stereo_refuses_what_it_cannot_use():
    cams = cameras_at([[0.0, 0.0, 4.0], [0.5, 0.0, 4.0]], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="0 < near < far"):
        stereo_points(plane_views(cams), cams, near=5.0, far=2.0)
    with pytest.raises(ValueError, match="at least two views"):
        stereo_points(plane_views(cams[0]), cams[0], near=2.0, far=12.0)


def sphere_views(radius: float = 1.0, size: int = 48) -> SimpleNamespace:
    """Four views of a sphere at the origin from a ring; alpha is 255 on the sphere."""
    eyes = [[4 * math.cos(a), 4 * math.sin(a), 0.5] for a in (0.0, math.pi / 2, math.pi, 3 * math.pi / 2)]
    cams = cameras_at(eyes, [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], size=size, focal=20.0)  # wide: every view sees the whole box
    alphas = []
    for i in range(len(cams)):
        origins, dirs = cams.generate_rays(i)
        along = -(origins * dirs).sum(-1)
        miss = (origins + dirs * along[..., None]).norm(dim=-1)
        alphas.append(((miss < radius) * 255).to(torch.uint8)[..., None])
    alpha = torch.stack(alphas)
    images = torch.where(alpha > 0, torch.tensor([200, 40, 40], dtype=torch.uint8), torch.tensor([255, 255, 255], dtype=torch.uint8))
    return SimpleNamespace(cameras=cams, alpha=alpha, images=images)


def test_visual_hull_points_lie_around_the_object_and_never_in_empty_space():
    split = sphere_views()
    bounds = torch.tensor([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]])
    points, colors = visual_hull_points(split, bounds, 2000, torch.Generator().manual_seed(0))
    assert len(points) == 2000
    distance = points.norm(dim=-1)
    # four silhouettes of a unit sphere carve a hull a little larger than it; uniform points in the
    # box would reach 5.2 and only 2 % of them would lie in the sphere
    assert float(distance.max()) < 1.7 and float((distance < 1.0).float().mean()) > 0.4
    torch.testing.assert_close(colors.mean(0), torch.tensor([200, 40, 40]) / 255.0, atol=0.03, rtol=0)


def test_random_backgrounds_recomposite_the_targets_and_resume(tiny_scene):
    split = tiny_scene.train
    batches = ViewBatcher(split, torch.device("cpu"), seed=0, batch_size=2, background=tiny_scene.background, random_background=True)
    state = batches.state_dict()
    first = batches.next()
    alpha = first.alpha
    original = split.images[first.indices].float() / 255.0
    empty, solid = alpha[..., 0] == 0, alpha[..., 0] == 1
    assert empty.any() and solid.any()
    for b in range(2):
        torch.testing.assert_close(first.rgb[b][empty[b]], first.background[b].expand(int(empty[b].sum()), 3))
        torch.testing.assert_close(first.rgb[b][solid[b]], original[b][solid[b]])
    assert not torch.allclose(first.background[0], first.background[1])
    batches.load_state_dict(state)
    again = batches.next()
    torch.testing.assert_close(again.rgb, first.rgb)  # the colours come from the saved generator
    plain = ViewBatcher(split, torch.device("cpu"), seed=0, batch_size=2).next()
    assert plain.background is None and torch.equal(plain.indices, first.indices)  # off: the same views as before


def test_sparse_runs_start_from_points_of_their_training_views(tiny_scene, tmp_path):
    config = TrainConfig(steps=2, views=3, points="views", out=str(tmp_path / "r"), progress=False, save_every=0)
    t = Trainer(config, SplatConfig(init_points=300, random_background=True), scene=tiny_scene)
    assert t.scene.points is not None and len(t.scene.points) == 300 == t.method.model.num_gaussians
    assert math.isfinite(t.run()["psnr"])


def test_bad_point_sources_get_one_line_errors(tiny_scene, tmp_path):
    no_alpha = dataclasses.replace(tiny_scene, train=dataclasses.replace(tiny_scene.train, alpha=None))
    with pytest.raises(Render3DError, match="--points hull needs training images with alpha"):
        Trainer(TrainConfig(steps=1, views=3, points="hull", out=str(tmp_path / "a"), progress=False), SplatConfig(), scene=no_alpha)
    with pytest.raises(Render3DError, match="--points stereo needs at least 2 training views"):
        Trainer(TrainConfig(steps=1, views=1, points="stereo", out=str(tmp_path / "b"), progress=False), SplatConfig(), scene=tiny_scene)
    with pytest.raises(Render3DError, match="the nerf method does not start from points"):
        Trainer(TrainConfig(method="nerf", steps=1, points="views", out=str(tmp_path / "c"), progress=False), NerfConfig(), scene=tiny_scene)
    with pytest.raises(Render3DError, match="--points must be one of data, random"):
        TrainConfig(points="colmap").validate()
