"""Sparse views and priors: view selection, pseudo views, regularisers, score distillation, the prior's data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import resumed_matches_uninterrupted

from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.errors import Render3DError
from render3d.priors.pseudo_views import PseudoViews, patch_camera
from render3d.priors.sds import sds_gradient, sds_loss
from render3d.sparse_views.selection import spread_views
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer


def ring_of_cameras(n: int = 24) -> Cameras:
    eyes = [torch.tensor([4 * math.cos(a), 4 * math.sin(a), 1.0]) for a in torch.linspace(0, 2 * math.pi, n + 1)[:-1].tolist()]
    c2w = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for e in eyes])
    return Cameras(intrinsics_matrix(40.0, 40.0, 16.0, 16.0), c2w, 32, 32)


def test_views_are_the_same_every_time_and_spread_around_the_scene():
    cams = ring_of_cameras(24)
    picks = spread_views(cams, 4)
    assert picks == spread_views(cams, 4) and len(set(picks)) == 4
    angles = sorted(math.degrees(math.atan2(float(cams.centers[i, 1]), float(cams.centers[i, 0]))) % 360 for i in picks)
    gaps = [(b - a) % 360 for a, b in zip(angles, angles[1:] + angles[:1])]
    assert min(gaps) >= 75  # four views on a ring: about 90 degrees apart, never bunched
    with pytest.raises(Render3DError, match="--views 30"):
        spread_views(cams, 30)


def test_sparse_runs_train_on_k_views_and_evaluate_on_the_full_test_split(tiny_scene, tmp_path):
    t = Trainer(TrainConfig(steps=2, views=3, out=str(tmp_path / "r"), progress=False, save_every=0), SplatConfig(init_points=300),
                scene=tiny_scene)
    assert len(t.scene.train) == 3 and len(t.scene.test) == len(tiny_scene.test)
    assert t.run()["views"] == len(tiny_scene.test)


def test_pseudo_views_lie_between_training_cameras_and_patches_cut_the_image():
    cams = ring_of_cameras(8)
    views = PseudoViews(cams, seed=0)
    sample = views.sample(16)
    radius = sample.centers.norm(dim=-1)
    assert ((radius > 3.0) & (radius < 5.2)).all()  # near the ring of radius 4.1 (jitter), never through the scene
    forward = sample.c2w[:, :3, 2]
    towards_center = -torch.nn.functional.normalize(sample.centers, dim=-1)
    assert ((forward * towards_center).sum(-1) > 0.8).all()  # still looking at the scene
    state = views.state_dict()
    a = views.sample(2).c2w
    views.load_state_dict(state)
    torch.testing.assert_close(views.sample(2).c2w, a)  # resumable
    patch = patch_camera(cams[:1], 8, torch.Generator().manual_seed(0))
    origins, dirs = patch.generate_rays(0)
    full_o, full_d = cams[:1].generate_rays(0)
    hits = [(torch.isclose(full_d, dirs[0, 0], atol=1e-6).all(-1)).nonzero()]
    assert patch.width == patch.height == 8 and len(hits[0]) == 1  # the patch's first ray is a ray of the full image


def test_sds_gradient_is_zero_when_the_prior_predicts_the_true_noise():
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("alphas_cumprod", torch.linspace(0.99, 0.01, 100))
            self.x0 = None

        def predict_noise(self, x_t, t, cond=None, guidance=1.0):
            ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()  # exactly the injected noise

    oracle = Oracle()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    oracle.x0 = x
    grad = sds_gradient(oracle, x, torch.tensor([10, 80]), torch.randn_like(x))
    assert grad.abs().max() < 1e-4
    y = x.clone().requires_grad_()
    sds_loss(y, torch.full_like(x, 0.5)).backward()
    torch.testing.assert_close(y.grad, torch.full_like(x, 0.5 / 2))  # its gradient is the SDS gradient (/ batch)


ORANGE = (230, 120, 20)


@pytest.fixture(scope="module")
def orange_prior(tmp_path_factory):
    """A tiny diffusion model that has learnt 'everything is orange' (8x8 images)."""
    from render3d.registry import ZOO_MODELS
    from render3d.zoo.data import ImageData
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    orange = torch.tensor(ORANGE, dtype=torch.uint8).view(1, 3, 1, 1).expand(64, 3, 8, 8).contiguous()
    data = ImageData("orange", orange, orange[:8], augment=False)
    out = tmp_path_factory.mktemp("orange") / "prior"
    config = ZooTrainConfig(data="orange", size=8, steps=300, batch_size=32, out=str(out), progress=False)
    diffusion = ZOO_MODELS.get("diffusion")
    # live weights (no EMA) after 300 steps; no pixel-unshuffle of an 8-pixel image
    trainer = ZooTrainer("diffusion", config, diffusion.config_type(hidden=16, lr=2e-3, ema=0.0, patch=1), data=data)
    trainer.run()
    return trainer.model.eval()


def test_sds_from_a_prior_trained_on_one_color_pulls_a_render_toward_it(orange_prior):
    """SDS steps from the orange prior move a blue image toward orange."""
    prior = orange_prior
    target = torch.tensor(ORANGE).float().view(1, 3, 1, 1) / 255 * 2 - 1
    image = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1).expand(1, 3, 8, 8).clone() * 2 - 1
    image.requires_grad_()
    opt = torch.optim.Adam([image], lr=0.02)
    g = torch.Generator().manual_seed(0)
    before = (image - target).abs().mean().item()
    for _ in range(150):
        t = torch.randint(20, 980 * len(prior.alphas_cumprod) // 1000, (1,), generator=g)
        grad = sds_gradient(prior, image, t, torch.randn(image.shape, generator=g))
        opt.zero_grad()
        sds_loss(image, grad).backward()
        opt.step()
    after = (image - target).abs().mean().item()
    assert after < 0.5 * before, (before, after)


def test_refining_with_a_prior_moves_an_image_toward_what_it_learnt_by_the_strength_asked(orange_prior):
    """SDEdit with the orange prior: no strength leaves a blue image as it is, more strength makes it more orange."""
    blue = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1).expand(2, 3, 8, 8).contiguous()
    orange = torch.tensor(ORANGE).float().view(1, 3, 1, 1) / 255
    distance = {}
    for strength in (0.0, 0.3, 0.9):
        refined = orange_prior.refine(blue, strength, steps=6, generator=torch.Generator().manual_seed(0))
        assert refined.shape == blue.shape and refined.min() >= 0 and refined.max() <= 1
        distance[strength] = float((refined - orange).abs().mean())
    assert distance[0.0] == pytest.approx(float((blue - orange).abs().mean()))
    assert distance[0.9] < 0.5 * distance[0.0] and distance[0.9] < distance[0.3] < distance[0.0], distance
    with pytest.raises(ValueError, match="strength"):
        orange_prior.refine(blue, 1.5, steps=2)


def test_a_prior_learns_only_from_the_runs_training_views(tmp_path, tiny_scene_dir):
    from render3d.priors.fit import fit_prior
    from render3d.sparse_views.selection import spread_views
    from render3d.datasets import load_scene

    fit_prior(str(tiny_scene_dir), 3, tmp_path / "prior", {}, size=16, per_view=4, budget=1.0, steps=2)
    record = json.loads((tmp_path / "prior" / "prior.json").read_text())
    scene = load_scene(tiny_scene_dir)
    allowed = {str(scene.root / scene.train.names[i]) for i in spread_views(scene.train.cameras, 3)}
    assert set(record["sources"]) == allowed
    assert not any("/test/" in s or "/val/" in s for s in record["sources"])


@pytest.mark.parametrize("method,mode", [("splat", "sds"), ("nerf", "sds"), ("splat", "targets")])
def test_resume_with_regularizers_and_a_prior_is_bit_identical(tiny_scene, tiny_scene_dir, tmp_path, method, mode):
    from test_nerf import small_nerf
    from render3d.priors.fit import fit_prior

    prior = tmp_path / "prior"
    fit_prior(str(tiny_scene_dir), 4, prior, {}, size=16, per_view=4, budget=1.0, steps=2)
    regs = "depth-tv,opacity,scale" if method == "splat" else "depth-tv,freq,occlusion"
    method_config = (SplatConfig(init_points=400, refine_start=7500, refine_every=10, sh_degree=1, random_background=True)
                     if method == "splat" else small_nerf("nerf"))
    points = "views" if method == "splat" else "data"

    def make(name: str) -> Trainer:
        config = TrainConfig(method=method, steps=24, views=4, reg=regs, points=points, prior=str(prior), prior_mode=mode,
                             out=str(tmp_path / name), progress=False, save_every=0, backend="torch")
        # targets: refreshed every 5 steps, so the resume at step 12 lands inside a set of refined patches
        options = {"prior-targets": {"refresh": 5, "patches": 3, "denoise_steps": 2}}
        return Trainer(config, method_config, scene=tiny_scene, loss_options=options if mode == "targets" else None)

    resumed = resumed_matches_uninterrupted(make, 12, tiny_scene)
    assert [t.name for t in resumed.loss_terms] == regs.split(",") + [{"sds": "sds", "targets": "prior-targets"}[mode]]


def test_regularizers_refuse_models_without_what_they_need(tiny_scene, tmp_path):
    t = Trainer(TrainConfig(steps=2, reg="freq", out=str(tmp_path / "r"), progress=False), SplatConfig(init_points=200), scene=tiny_scene)
    with pytest.raises(Render3DError, match="--reg freq needs an encoding"):
        t.run()


def test_prior_bench_compares_every_non_learned_option_and_writes_its_report(tiny_scene_dir, tmp_path):
    from render3d.priors.bench import run_bench

    options = {"train": {"steps": 2, "backend": "torch"}, "method": {"init_points": 200}}
    rows = run_bench(str(tiny_scene_dir), [3], 1, tmp_path, options, {}, use_prior=False, log=lambda line: None)
    assert [r.name for r in rows] == ["none", "depth-tv", "opacity", "scale", "points", "random-bg", "all"]
    assert all(len(r.psnr) == 1 and len(r.val_psnr) == 1 for r in rows)
    report = (tmp_path / "report.md").read_text()
    assert "| 3 | points | `--points views` |" in report and "| 3 | random-bg | `--splat.random-background` |" in report
    assert "| 3 | all | `--reg depth-tv,opacity,scale --points views --splat.random-background` |" in report
    assert len(list((tmp_path / "renders").glob("views3-*.png"))) == 1
