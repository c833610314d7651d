"""Per-image exposure and white balance learned in training (``--splat.appearance exposure``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import resumed_matches_uninterrupted

from render3d.cli import main
from render3d.splat.appearance import ExposureCorrection, RowAdam
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


def test_training_with_the_correction_resumes_exactly(tiny_scene, tmp_path):
    """The per-image values and their optimiser state are in the checkpoint: a resumed run equals an uninterrupted one."""
    scene, _ = changed_exposure(tiny_scene)

    def make(name: str) -> Trainer:
        config = TrainConfig(steps=20, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(config, SplatConfig(init_points=500, sh_degree=1, appearance="exposure"), scene=scene)

    resumed = resumed_matches_uninterrupted(make, 10, scene)
    assert resumed.method.appearance is not None and resumed.method.appearance.values.abs().sum() > 0


@pytest.mark.parametrize("option, value", [("--splat.appearance", "sepia"), ("--splat.lr-appearance", "-1")])
def test_bad_appearance_options_are_one_line_and_exit_2(option, value, capsys):
    assert main(["train", option, value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and option in err
