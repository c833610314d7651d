"""Camera pose correction: learned in training (``--splat.pose-opt``, ``--nerf.pose-opt``) and fitted to test views (``eval --refine-test-poses``)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from helpers import resumed_matches_uninterrupted

from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.cli import main
from render3d.pose_correction import (PoseCorrection, align_poses, corrected_c2w, fit_poses, pose_changes, so3_exp,
                                      world_transforms)
from render3d.nerf.estimators import GridEstimator
from render3d.nerf.field import HashField, SceneBox
from render3d.nerf.method import NerfConfig
from render3d.nerf.model import NerfModel
from render3d.nerf.sampler import OccupancyGrid
from render3d.runs import load_run
from render3d.splat.method import SplatConfig
from render3d.splat.model import GaussianSplats, init_params
from render3d.train import TrainConfig, Trainer


def disturbed(cameras: Cameras, degrees: float, distance: float, seed: int = 0) -> Cameras:
    """``cameras`` each turned by ``degrees`` about a random axis and moved by ``distance`` in a random direction."""
    generator = torch.Generator().manual_seed(seed)
    n = len(cameras)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    c2w = cameras.c2w.clone()
    c2w[:, :3, :3] = c2w[:, :3, :3] @ so3_exp(axis * math.radians(degrees))
    c2w[:, :3, 3] += direction * distance
    return replace(cameras, c2w=c2w)


def test_align_poses_undoes_a_rigid_motion_of_every_camera_and_no_more():
    generator = torch.Generator().manual_seed(3)
    truth = torch.eye(4, dtype=torch.float64).repeat(8, 1, 1)
    truth[:, :3, :3] = so3_exp(torch.randn(8, 3, generator=generator, dtype=torch.float64))
    truth[:, :3, 3] = torch.randn(8, 3, generator=generator, dtype=torch.float64) * 2
    motion = torch.eye(4, dtype=torch.float64)
    motion[:3, :3] = so3_exp(torch.tensor([[0.3, -0.5, 0.2]], dtype=torch.float64))[0]
    motion[:3, 3] = torch.tensor([0.5, 1.0, -2.0])
    moved = motion @ truth
    degrees, distances = pose_changes(align_poses(moved, truth), truth)
    assert degrees.max() < 1e-4 and distances.max() < 1e-6
    jittered = disturbed(Cameras(torch.eye(3).expand(8, 3, 3), truth.float(), 8, 8), 2.0, 0.1).c2w.double()
    degrees, distances = pose_changes(align_poses(motion @ jittered, truth), truth)
    assert 0.5 < float(degrees.mean()) < 3.0 and 0.02 < float(distances.mean()) < 0.15


def blob_model(sh_degree: int = 0, seed: int = 0) -> GaussianSplats:
    """A few hundred coloured Gaussians in the unit cube."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(400, 3, generator=generator) * 2 - 1
    colors = torch.rand(400, 3, generator=generator)
    params = init_params(points, colors, sh_degree, init_opacity=0.6, init_scale=1.0)
    if sh_degree:
        params["shN"].data.normal_(0, 0.2, generator=generator)
    return GaussianSplats(params, sh_degree, "torch", torch.zeros(3))


def one_camera(size: int = 48) -> Cameras:
    c2w = look_at(torch.tensor([0.3, -0.4, 3.5]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None]
    K = intrinsics_matrix(size * 1.2, size * 1.2, size / 2, size / 2)[None]
    return Cameras(K, c2w, size, size)


def test_the_exponential_map_is_a_rotation_with_gradients_at_zero():
    omega = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)) * 0.7
    skew = torch.zeros(6, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -omega[:, 2], omega[:, 1], -omega[:, 0]
    skew = skew - skew.transpose(1, 2)
    assert torch.allclose(so3_exp(omega), torch.linalg.matrix_exp(skew), atol=1e-5)
    zero = torch.zeros(2, 3, requires_grad=True)
    (so3_exp(zero) * torch.randn(2, 3, 3)).sum().backward()
    assert torch.isfinite(zero.grad).all() and zero.grad.abs().sum() > 0


def test_the_render_gradient_in_the_pose_delta_matches_finite_differences():
    """d(render)/d(delta) through the world transform (SH degree 1), in float64 (the torch kernels), against central
    differences."""
    from render3d.splat.render import rasterize

    model, camera = blob_model(sh_degree=1), one_camera()
    a = {k: v.detach().double() for k, v in model.activated().items()}
    c2w, K = camera.c2w.double(), camera.K.double()
    weights = torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(deltas):
        rgb = rasterize("torch", a["means"], a["quats"], a["scales"], a["opacities"], a["coeffs"], 1, torch.linalg.inv(c2w), K,
                        48, 48, world_transforms=world_transforms(c2w, deltas, 1.0))[0]
        return (rgb * weights).sum()

    start = torch.tensor([[0.01, -0.02, 0.015, 0.03, 0.01, -0.02]], dtype=torch.float64, requires_grad=True)
    loss(start).backward()
    eps = 1e-6
    numeric = torch.stack([(loss(start.detach() + eps * e) - loss(start.detach() - eps * e)) / (2 * eps)
                           for e in torch.eye(6, dtype=torch.float64)[:, None]])
    # within 2%: the rasteriser's cut-offs (alpha below 1/255, transmittance) make the picture only piecewise smooth,
    # so central differences scatter by about 0.5% at any step size
    torch.testing.assert_close(start.grad[0], numeric, rtol=2e-2, atol=2e-2 * float(numeric.abs().max()))


def test_moving_the_world_renders_what_the_corrected_camera_sees():
    """The compiled CPU path renders corrected cameras by moving the Gaussians; with SH degree 0 (no view direction)
    that is exactly the render from the corrected pose."""
    model = blob_model()
    camera = one_camera()
    deltas = torch.tensor([[0.03, -0.02, 0.05, 0.04, -0.03, 0.02]])
    moved = model.render_corrected(camera, world_transforms(camera.c2w, deltas, 2.0))
    direct = model.render(replace(camera, c2w=corrected_c2w(camera.c2w, deltas, 2.0))).rgb
    assert (moved - direct).abs().max() < 2e-3
    assert (moved - model.render(camera).rgb).abs().max() > 0.05  # the correction changes the image


def hash_nerf(seed: int = 0) -> NerfModel:
    """An untrained hash-grid NeRF over the cube [-1, 1]^3 whose tables are drawn large enough to give a textured image."""
    torch.manual_seed(seed)
    box = SceneBox(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), contracted=False)
    field = HashField(box, levels=4, log2_table_size=12, base_resolution=4, max_resolution=32, hidden=16)
    torch.nn.init.normal_(field.encoding.embeddings, 0.0, 1.0)
    estimator = GridEstimator(OccupancyGrid(box, 8), near=0.5, far=6.0, samples_per_ray=64)
    return NerfModel(field, estimator, torch.ones(3), render_chunk=4096).eval()


def test_nerf_rays_moved_by_the_correction_render_what_the_corrected_camera_sees():
    """A NeRF renders a corrected camera by carrying its rays (camera_motions, move_rays): the same image as the
    camera at the corrected pose, and a gradient reaches the correction through the hash encoding."""
    model = hash_nerf()
    camera = one_camera(24)
    deltas = torch.tensor([[0.03, -0.02, 0.05, 0.04, -0.03, 0.02]], requires_grad=True)
    moved = model.render_corrected(camera, world_transforms(camera.c2w, deltas, 2.0))
    direct = model.render(replace(camera, c2w=corrected_c2w(camera.c2w, deltas.detach(), 2.0))).rgb
    torch.testing.assert_close(moved.detach(), direct, atol=1e-4, rtol=0)
    assert (direct - model.render(camera).rgb).abs().max() > 0.05  # the correction changes the image
    moved.mean().backward()
    assert torch.isfinite(deltas.grad).all() and deltas.grad.abs().min() > 0
    pixels = torch.tensor([0, 37, 300, 575])  # a pose fit's subset of the view's pixels renders only those rays
    subset = model.render_corrected(camera, world_transforms(camera.c2w, deltas.detach(), 2.0), pixels)
    torch.testing.assert_close(subset, moved.detach().reshape(1, -1, 3)[:, pixels], atol=1e-5, rtol=0)


def test_a_fit_that_wanders_off_keeps_the_given_pose():
    """With a learning rate far too high the fit diverges; the view keeps the best correction it saw, never one
    with a larger error than the given pose's (the fox capture's refined test poses once scored 4.8 dB)."""
    model = blob_model(sh_degree=1)
    for p in model.parameters():
        p.requires_grad_(False)
    camera = one_camera()
    target = model.render(camera).rgb[0]

    def error(deltas):
        with torch.no_grad():
            return float((model.render_corrected(camera, world_transforms(camera.c2w, deltas, 1.0))[0] - target).abs().mean())

    deltas = fit_poses(model.render_corrected, camera, lambda i: target, scale=1.0, steps=20, lr=2.0)
    assert error(deltas) <= error(torch.zeros(1, 6)) + 1e-7


@pytest.mark.parametrize("pixels", [0, 800])
def test_a_disturbed_view_is_fitted_back_to_its_pose(pixels):
    """fit_poses on a frozen model: a view disturbed by 2 degrees and 0.1 units comes back to a fraction of that,
    comparing the whole view or a fixed random subset of its pixels each step."""
    model = blob_model(sh_degree=1)
    for p in model.parameters():
        p.requires_grad_(False)
    truth = one_camera()
    target = model.render(truth).rgb[0]
    start = disturbed(truth, 2.0, 0.1)
    deltas = fit_poses(model.render_corrected, start, lambda i: target, scale=1.0, steps=150, lr=1e-2, pixels=pixels)
    fitted = corrected_c2w(start.c2w, deltas, 1.0)
    degrees_before, distance_before = pose_changes(start.c2w, truth.c2w)
    degrees, distance = pose_changes(fitted, truth.c2w)
    assert float(degrees) < 0.1 * float(degrees_before) and float(distance) < 0.1 * float(distance_before), (degrees, distance)


def test_training_learns_corrections_and_saves_them_with_the_run(tiny_scene_dir, tmp_path):
    """Pose-opt moves the corrections of the images it drew; refined_poses.json and the checkpoint hold the refined
    poses, and loading the run gives them to render / view."""
    config = TrainConfig(data=str(tiny_scene_dir), steps=40, out=str(tmp_path / "run"), save_every=0, progress=False,
                         backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=500, sh_degree=1, pose_opt=True))
    scene = trainer.scene
    metrics = trainer.run()
    assert metrics["poses"] == "given"
    corrections = trainer.method.poses.correction.deltas.detach()
    assert torch.isfinite(corrections).all() and (corrections.abs().sum(1) > 0).sum() >= 8
    saved = json.loads((tmp_path / "run" / "refined_poses.json").read_text())
    assert len(saved["frames"]) == len(scene.train)
    refined = trainer.method.refined_train_cameras().c2w
    assert torch.allclose(torch.tensor(saved["frames"][3]["c2w"], dtype=torch.float64), refined[3].double(), atol=1e-6)
    run = load_run(tmp_path / "run", "torch")
    assert torch.allclose(run.scene.train.cameras.c2w, refined, atol=1e-6)


def test_training_with_pose_correction_resumes_exactly(tiny_scene, tmp_path):
    def make(name: str) -> Trainer:
        config = TrainConfig(steps=20, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(config, SplatConfig(init_points=500, sh_degree=1, pose_opt=True), scene=tiny_scene)

    resumed = resumed_matches_uninterrupted(make, 10, tiny_scene)
    assert resumed.method.poses is not None and resumed.method.poses.correction.deltas.abs().sum() > 0


def small_nerf_with_poses(**options) -> NerfConfig:
    return NerfConfig(levels=6, log2_table_size=12, max_resolution=64, hidden=32, samples_per_ray=48, target_samples=4096,
                      initial_rays=256, grid_resolution=16, grid_warmup=20, grid_every=4, pose_opt=True, **options)


def test_nerf_pose_correction_learns_saves_and_resumes_exactly(tiny_scene_dir, tiny_scene, tmp_path):
    """``--nerf.pose-opt``: every ray moves with its camera's correction; the corrections learn, resume exactly (the
    field they trained is bit for bit the uninterrupted run's) and are saved with the run."""
    def make(name: str) -> Trainer:
        config = TrainConfig(data=str(tiny_scene_dir), method="nerf", steps=20, out=str(tmp_path / name), save_every=0,
                             progress=False, backend="torch")
        return Trainer(config, small_nerf_with_poses(pose_opt_start=0.0), scene=tiny_scene)

    resumed = resumed_matches_uninterrupted(make, 10, tiny_scene)
    corrections = resumed.method.poses.correction.deltas.detach()
    assert torch.isfinite(corrections).all() and (corrections.abs().sum(1) > 0).sum() >= 12
    saved = json.loads((resumed.run_dir / "refined_poses.json").read_text())
    refined = resumed.method.refined_train_cameras().c2w
    assert torch.allclose(torch.tensor(saved["frames"][5]["c2w"], dtype=torch.float64), refined[5].double(), atol=1e-6)
    assert torch.allclose(load_run(resumed.run_dir, "torch").scene.train.cameras.c2w, refined, atol=1e-6)


def test_corrections_wait_for_pose_opt_start_then_learn(tiny_scene, tmp_path):
    """With ``pose_opt_start`` the corrections stay at the identity for that share of the run, then move; the learning
    rate decays from there."""
    config = TrainConfig(steps=20, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=300, sh_degree=1, pose_opt=True, pose_opt_start=0.5, lr_pose=1e-2),
                      scene=tiny_scene)
    for _ in range(10):
        trainer.step_once()
    assert trainer.method.poses.correction.deltas.abs().sum() == 0
    assert trainer.method.optimizers()["poses"].param_groups[0]["lr"] == pytest.approx(1e-2)
    for _ in range(10):
        trainer.step_once()
    assert trainer.method.poses.correction.deltas.abs().sum() > 0
    assert trainer.method.optimizers()["poses"].param_groups[0]["lr"] < 1e-2


def test_a_pose_correction_starts_as_the_identity():
    correction = PoseCorrection(3, scale=4.0)
    cameras = one_camera()
    assert torch.allclose(correction.apply(replace(cameras, K=cameras.K.expand(3, 3, 3), c2w=cameras.c2w.expand(3, 4, 4))).c2w,
                          cameras.c2w.expand(3, 4, 4))
    assert float(correction.penalty(torch.tensor([0, 2])).detach()) == 0.0


@pytest.mark.parametrize("method_options", [["--splat.init-points", "300"],
                                            ["--method", "nerf", "--nerf.levels", "4", "--nerf.log2-table-size", "12",
                                             "--nerf.max-resolution", "32", "--nerf.hidden", "16"]], ids=["splat", "nerf"])
def test_eval_refine_test_poses_writes_both_scores(tiny_scene_dir, tmp_path, capsys, method_options):
    run = tmp_path / "run"
    assert main(["train", str(tiny_scene_dir), "--steps", "30", *method_options, "--out", str(run), "--backend", "torch"]) == 0
    assert main(["eval", str(run), "--refine-test-poses", "--refine-steps", "5", "--backend", "torch"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["poses"] == "given" and metrics["refined_poses"]["steps"] == 5
    assert math.isfinite(metrics["refined_poses"]["psnr"]) and metrics["refined_poses"]["views"] == metrics["views"]
    assert (run / "renders" / "test_refined_poses").is_dir()


@pytest.mark.parametrize("argv, field", [(["train", "--splat.lr-pose", "0"], "--splat.lr-pose"),
                                         (["train", "--splat.pose-reg", "-1"], "--splat.pose-reg"),
                                         (["train", "--splat.pose-opt-start", "1"], "--splat.pose-opt-start"),
                                         (["train", "--method", "nerf", "--nerf.lr-pose", "-1"], "--nerf.lr-pose"),
                                         (["train", "--method", "nerf", "--nerf.pose-opt-start", "nan"], "--nerf.pose-opt-start"),
                                         (["eval", "runs/none", "--refine-steps", "0"], "--refine-steps")])
def test_bad_pose_options_exit_2_naming_the_option(argv, field, capsys):
    """A bad value ends in exit status 2 and an error line naming the option (after argparse's usage, for eval)."""
    if argv[0] == "train":
        assert main(argv + ["--steps", "1"]) == 2
    else:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert field in last and "error" in last, last
