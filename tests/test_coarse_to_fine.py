"""Coarse-to-fine training images (``--splat.resolution-start``)."""

from __future__ import annotations

import math

import pytest
import torch

from render3d.batches import downscaled
from render3d.cameras import Cameras, intrinsics_matrix
from render3d.cli import main
from render3d.methods import Batch
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer


def test_the_image_scale_doubles_to_full_size_at_the_set_share_of_the_run(tiny_scene, tmp_path):
    config = TrainConfig(steps=100, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    method = Trainer(config, SplatConfig(init_points=200, resolution_start=0.25, resolution_full=0.5), scene=tiny_scene).method
    assert [method.image_scale(s) for s in (0, 24, 25, 49, 50, 99)] == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    plain = Trainer(TrainConfig(steps=100, out=str(tmp_path / "plain"), save_every=0, progress=False, backend="torch"),
                    SplatConfig(init_points=200), scene=tiny_scene).method
    assert plain.image_scale(0) == 1.0


def test_a_downscaled_batch_averages_colors_and_keeps_unknown_depth_unknown():
    K = intrinsics_matrix(40.0, 40.0, 16.0, 16.0)[None]
    cameras = Cameras(K, torch.eye(4)[None], 32, 32)
    rgb = torch.rand(1, 32, 32, 3)
    depth = torch.zeros(1, 32, 32, 1)
    depth[:, ::2, ::2] = 2.0  # known on one pixel in four
    batch = downscaled(Batch(rgb=rgb, cameras=cameras, depth=depth, mask=torch.ones(1, 32, 32, 1, dtype=torch.bool)), 0.25)
    assert batch.rgb.shape == (1, 8, 8, 3) and batch.cameras.width == 8 and batch.cameras.height == 8
    assert torch.allclose(batch.rgb[0, 0, 0], rgb[0, :4, :4].mean((0, 1)), atol=1e-6)
    assert set(batch.depth.unique().tolist()) <= {0.0, 2.0} and batch.mask.dtype == torch.bool
    assert math.isclose(float(batch.cameras.K[0, 0, 0]), 10.0)


def test_training_coarse_to_fine_ends_at_full_size(tiny_scene, tmp_path):
    config = TrainConfig(steps=60, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    metrics = Trainer(config, SplatConfig(init_points=500, sh_degree=1, resolution_start=0.5), scene=tiny_scene).run()
    assert metrics["psnr"] > 14.0, metrics  # evaluated at full size


@pytest.mark.parametrize("option, value", [("--splat.resolution-start", "0"), ("--splat.resolution-full", "1.5")])
def test_bad_resolution_options_are_one_line_and_exit_2(option, value, capsys):
    assert main(["train", option, value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and option in err, err
