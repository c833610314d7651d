"""Per-image appearance learned in training: exposure and white balance (``--splat.appearance exposure``) and
per-image codes read by the colours (``--splat.appearance embedding``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import resumed_matches_uninterrupted

from render3d.cli import main
from render3d.appearance import AppearanceEmbedding, ExposureCorrection, RowAdam
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer


def changed_exposure(scene, seed: int = 0):
    """``scene`` with every training image scaled by its own exposure in [0.6, 1.5] and a white balance in
    [0.95, 1.05] per channel; and those gains ``[N, 3]``."""
    generator = torch.Generator().manual_seed(seed)
    n = len(scene.train.images)
    gain = (0.6 + 0.9 * torch.rand(n, 1, generator=generator)) * (0.95 + 0.1 * torch.rand(n, 3, generator=generator))
    images = (scene.train.images.float() * gain[:, None, None, :]).clamp(0, 255).round().to(torch.uint8)
    return replace(scene, train=replace(scene.train, images=images)), gain


def test_the_correction_starts_as_the_identity_stays_zero_mean_and_saturates():
    """Identity until trained; recentred log-gains average to zero; the corrected render clips at 1 as a camera does."""
    correction = ExposureCorrection(5)
    rgb = torch.rand(2, 4, 4, 3)
    assert torch.equal(correction(rgb, torch.tensor([1, 4])), rgb)
    with torch.no_grad():
        correction.values.normal_()
    correction.recenter()
    assert torch.allclose(correction.values.mean(0), torch.zeros(3), atol=1e-6)
    out = correction(rgb, torch.tensor([2, 2]))
    assert torch.allclose(out, (rgb * torch.exp(correction.values[2])).clamp(0, 1), atol=1e-6)
    out.sum().backward()
    assert correction.values.grad[2].abs().sum() > 0 and correction.values.grad[[0, 1, 3, 4]].abs().sum() == 0


def test_the_embedding_starts_as_the_identity_and_its_corrections_average_to_zero():
    """Codes start at zero (the identity); once recentred, the corrections of all the training images average to zero
    for every Gaussian and direction (no cast can move into the scene); a step's gradient reaches only its images' codes."""
    torch.manual_seed(0)
    embedding = AppearanceEmbedding(5, scene_scale=2.0)
    colors, means, centers = torch.rand(1, 50, 3), torch.randn(50, 3), torch.randn(1, 3)
    assert torch.equal(embedding(colors, means, centers, torch.tensor([3])), colors)
    with torch.no_grad():
        embedding.codes.normal_()
    embedding.recenter()
    every_image = torch.stack([embedding(colors, means, centers, torch.tensor([i]))[0] for i in range(5)])
    assert (every_image - colors).abs().max() > 0.01
    torch.testing.assert_close(every_image.mean(0), colors[0], atol=1e-5, rtol=0)
    embedding(colors.expand(2, -1, -1), means, centers.expand(2, -1), torch.tensor([1, 4])).sum().backward()
    assert embedding.codes.grad[[1, 4]].abs().sum() > 0 and embedding.codes.grad[[0, 2, 3]].abs().sum() == 0


@pytest.mark.slow
def test_the_embedding_learns_each_training_image_exposure(tiny_scene, tmp_path):
    """After training on images with changed exposure, the brightening each image's code gives the Gaussians' colours
    tracks that image's exposure (correlation of the logs > 0.8), and the test views (the code 0) still score."""
    scene, gains = changed_exposure(tiny_scene)
    config = TrainConfig(steps=300, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=1500, sh_degree=1, appearance="embedding"), scene=scene)
    metrics = trainer.run()
    means, embedding = trainer.method.model.activated()["means"], trainer.method.appearance
    centers = scene.train.cameras.c2w[:, :3, 3]
    gray = torch.full((1, means.shape[0], 3), 0.5)
    with torch.no_grad():  # each image's mean brightening of gray Gaussians seen from its camera
        learned = torch.stack([embedding(gray, means, centers[i:i + 1], torch.tensor([i])).mean() / 0.5
                               for i in range(len(centers))])
    true = gains.log().mean(1)
    correlation = torch.corrcoef(torch.stack([learned.clamp_min(1e-3).log(), true - true.mean()]))[0, 1]
    assert correlation > 0.8, (correlation, learned, true)
    assert metrics["psnr"] > 18  # the average look still renders the scene (plain training scores 21.6 here)


def test_row_adam_moves_only_the_rows_a_step_saw():
    """Rows without a gradient in a step keep their values, even after earlier steps moved them (plain Adam drifts)."""
    table = torch.nn.Parameter(torch.zeros(4, 3))
    optimizer = RowAdam([table], lr=0.1)
    for rows in ([0, 1], [1], [1], [2]):
        optimizer.zero_grad()
        table[rows].sum().backward()
        before = table.detach().clone()
        optimizer.step()
        moved = (table.detach() != before).any(dim=1)
        assert moved.tolist() == [i in rows for i in range(4)]
    assert torch.allclose(table[0], torch.full((3,), -0.1)) and (table[3] == 0).all()


@pytest.mark.slow
def test_learned_gains_follow_each_training_image_exposure(tiny_scene, tmp_path):
    """After training, each image's learned gain tracks the exposure it was given (correlation of the logs > 0.8)."""
    scene, gains = changed_exposure(tiny_scene)
    config = TrainConfig(steps=300, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=1500, sh_degree=1, appearance="exposure"), scene=scene)
    trainer.run()
    learned = trainer.method.appearance.values.detach().mean(1)
    true = gains.log().mean(1)
    correlation = torch.corrcoef(torch.stack([learned, true - true.mean()]))[0, 1]
    assert correlation > 0.8, (correlation, learned, true)


@pytest.mark.parametrize("mode", ["exposure", "embedding"])
def test_training_with_the_appearance_resumes_exactly(mode, tiny_scene, tmp_path):
    """The per-image values (and the embedding's MLP) and their optimiser state are in the checkpoint: a resumed run
    equals an uninterrupted one."""
    scene, _ = changed_exposure(tiny_scene)

    def make(name: str) -> Trainer:
        config = TrainConfig(steps=20, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(config, SplatConfig(init_points=500, sh_degree=1, appearance=mode), scene=scene)

    resumed = resumed_matches_uninterrupted(make, 10, scene)
    appearance = resumed.method.appearance
    assert appearance is not None and next(appearance.parameters()).abs().sum() > 0


def test_a_checkpoint_from_before_the_embedding_restores_its_exposure(tiny_scene, tmp_path):
    """Exposure checkpoints written before ``--splat.appearance embedding`` (``values`` and ``optimizer``) still load."""
    scene, _ = changed_exposure(tiny_scene)

    def make(name: str) -> Trainer:
        config = TrainConfig(steps=10, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(config, SplatConfig(init_points=300, sh_degree=1, appearance="exposure"), scene=scene)

    trained = make("old")
    for _ in range(5):
        trained.step_once()
    state = trained.method.state_dict()
    state["appearance"] = {"values": state["appearance"]["state"]["values"],
                           "optimizer": state["appearance"]["optimizers"]["appearance"]}
    fresh = make("new").method
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.appearance.values, trained.method.appearance.values, rtol=0, atol=0)
    assert fresh.optimizers()["appearance"].state_dict()["state"]


@pytest.mark.parametrize("option, value", [("--splat.appearance", "sepia"), ("--splat.lr-appearance", "-1"),
                                           ("--splat.lr-appearance-mlp", "0")])
def test_bad_appearance_options_are_one_line_and_exit_2(option, value, capsys):
    assert main(["train", option, value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and option in err


def test_the_appearance_fit_protocol_fits_on_the_left_half_and_scores_the_right(tiny_scene):
    """A model whose renders are each test image at half its exposure: NeRF-W's protocol fits a gain of 2 on the left
    half and scores the right half as (almost) exact, while the plain score stays low."""
    from render3d.evaluate import evaluate_appearance_fit, evaluate_split
    from render3d.protocol import RenderOutput

    split = tiny_scene.test

    class DarkenedImages:
        def render(self, cameras, mode="rgb"):
            i = next(j for j in range(len(split)) if torch.equal(split.cameras[j].c2w, cameras.c2w))
            rgb = split.image_float(i)[None] * 0.5
            return RenderOutput(rgb=rgb, depth=torch.zeros_like(rgb[..., :1]), alpha=torch.ones_like(rgb[..., :1]))

    plain = evaluate_split(DarkenedImages(), split)
    fitted = evaluate_appearance_fit(DarkenedImages(), split)
    assert plain["psnr"] < 15 and fitted["psnr"] > 40 and fitted["views"] == len(split)
    for row in fitted["per_view"]:
        assert row["gain"] == pytest.approx([2.0, 2.0, 2.0], rel=0.02)


def test_eval_reports_the_appearance_fit_under_its_own_key(splat_run, tmp_path):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(splat_run, run)  # the shared run folder stays as the other tests expect it
    assert main(["eval", str(run), "--appearance-fit", "half", "--backend", "torch"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["poses"] == "given" and metrics["appearance_fit"]["protocol"] == "half"
    assert metrics["appearance_fit"]["views"] == metrics["views"] and metrics["appearance_fit"]["psnr"] > 0


def learned_log_gains(method, cameras) -> torch.Tensor:
    """Each training image's learned log-brightening ``[N]``: its gain (``exposure``), or what its code does to a gray
    ray from its camera to the scene's centre (``embedding``)."""
    appearance = method.appearance
    if isinstance(appearance, ExposureCorrection):
        return appearance.values.detach().mean(1)
    with torch.no_grad():
        gray = torch.full((len(cameras), 3), 0.5)
        brightened = appearance.on_rays(gray, torch.zeros(len(cameras), 3), -cameras.c2w[:, :3, 3], torch.arange(len(cameras)))
    return (brightened.mean(1) / 0.5).clamp_min(1e-3).log()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exposure", "embedding"])
def test_a_nerf_learns_each_training_image_exposure_and_resumes_exactly(tiny_scene, tmp_path, mode):
    """``--nerf.appearance exposure|embedding``: what each image's gain or code does to its rays' colours tracks that
    image's exposure (correlation of the logs > 0.8), and a resumed run equals an uninterrupted one."""
    from dataclasses import replace as replace_config

    from test_nerf import small_nerf

    scene, gains = changed_exposure(tiny_scene)
    config = replace_config(small_nerf("nerf"), appearance=mode)

    def make(name: str, steps: int = 20) -> Trainer:
        train = TrainConfig(method="nerf", steps=steps, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(train, config, scene=scene)

    resumed_matches_uninterrupted(make, 10, scene)
    trainer = make("long", steps=300)
    metrics = trainer.run()
    learned, true = learned_log_gains(trainer.method, scene.train.cameras), gains.log().mean(1)
    correlation = torch.corrcoef(torch.stack([learned, true - true.mean()]))[0, 1]
    assert correlation > 0.8, (correlation, learned, true)
    assert metrics["psnr"] > 15


@pytest.mark.parametrize("option, value", [("--nerf.appearance", "bilateral"), ("--nerf.lr-appearance", "0"),
                                           ("--nerf.lr-appearance-mlp", "-1")])
def test_bad_nerf_appearance_options_are_one_line_and_exit_2(option, value, capsys):
    assert main(["train", "--method", "nerf", option, value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and option in err
