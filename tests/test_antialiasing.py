"""The antialiased mode (``--splat.antialiased``, Mip-Splatting's 2D filter): what it renders, training with it,
and exports that render the same in classic renderers. The kernels' values and gradients against the torch
reference are in ``test_cpu_rasterizer.py`` (and against gsplat in ``test_splat_render.py`` on CUDA)."""

from __future__ import annotations

import json

import pytest
import torch

from render3d.cameras import intrinsics_matrix
from render3d.cli import main
from render3d.splat.model import GaussianSplats, init_params
from render3d.splat.ply import load_ply
from render3d.splat.render import RasterSettings, rasterize


def _coverage(antialiased: bool, size: int) -> float:
    """Alpha of one small Gaussian summed over an image ``size`` pixels wide, in units of the full (64 px) image's
    pixels: what the Gaussian covers of the picture, which should not depend on the resolution."""
    means, quats = torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    scales, opacities, coeffs = torch.full((1, 3), 0.02), torch.full((1,), 0.8), torch.zeros(1, 1, 3)
    focal = size * 1.5
    Ks = intrinsics_matrix(focal, focal, size / 2, size / 2)[None]
    _, _, alphas, _ = rasterize("torch", means, quats, scales, opacities, coeffs, 0, torch.eye(4)[None], Ks, size, size,
                                RasterSettings(antialiased=antialiased))
    return float(alphas.sum()) * (64 / size) ** 2


def test_a_gaussian_covers_the_same_share_of_the_picture_at_any_resolution_only_when_antialiased():
    """A Gaussian 0.48 px across at 64 px is 0.06 px at 8 px: the classic mode's blur swells it to the blur's size
    (many times its area), the antialiased mode fades it by as much (Mip-Splatting's point)."""
    classic = [_coverage(False, size) for size in (64, 16, 8)]
    antialiased = [_coverage(True, size) for size in (64, 16, 8)]
    assert classic[2] > 10 * classic[0]
    for value in antialiased[1:]:
        assert value == pytest.approx(antialiased[0], rel=0.15)


def test_old_checkpoints_without_the_setting_load_in_the_classic_mode():
    points, colors = torch.rand(20, 3), torch.rand(20, 3)
    state = GaussianSplats(init_params(points, colors, 0), 0).export_state()
    del state["settings"]["antialiased"]
    assert GaussianSplats.from_state(state).settings.antialiased is False


@pytest.fixture(scope="module")
def antialiased_run(tiny_scene_dir, tmp_path_factory):
    """A 150-step run on the 32-pixel default scene with ``--splat.antialiased``."""
    out = tmp_path_factory.mktemp("antialiased") / "run"
    assert main(["train", str(tiny_scene_dir), "--steps", "150", "--out", str(out), "--backend", "torch", "--no-progress",
                 "--splat.antialiased", "--splat.sh-degree", "1", "--splat.init-points", "1500"]) == 0
    return out


@pytest.mark.slow
def test_training_records_the_mode_and_the_model_renders_with_it(antialiased_run):
    from render3d.runs import load_run

    assert json.loads((antialiased_run / "config.json").read_text())["splat"]["antialiased"] is True
    run = load_run(antialiased_run)
    assert run.model.settings.antialiased is True
    assert json.loads((antialiased_run / "metrics.json").read_text())["psnr"] > 18


@pytest.mark.slow
def test_the_exported_ply_renders_like_the_antialiased_model_in_a_classic_renderer(antialiased_run):
    """The PLY file has no antialiased flag: its opacities carry the compensation, so a classic render of it matches
    the antialiased render at the training views far better than the raw opacities do."""
    from render3d.runs import load_run

    run = load_run(antialiased_run)
    cameras = run.scene.train.cameras[:4]
    assert main(["export", str(antialiased_run), "--format", "ply"]) == 0
    from_file = load_ply(antialiased_run / "export" / "splats.ply")
    assert from_file.settings.antialiased is False and from_file.num_gaussians == run.model.num_gaussians
    from_file.background = run.model.background
    target = run.model.render(cameras).rgb
    raw = GaussianSplats(run.model.params, run.model.max_sh_degree, "torch", run.model.background, RasterSettings())
    baked_error = (from_file.render(cameras).rgb - target).abs().mean()
    raw_error = (raw.render(cameras).rgb - target).abs().mean()
    assert baked_error < 0.5 * raw_error and baked_error < 0.02, (float(baked_error), float(raw_error))


def test_views_of_a_model_without_cameras_are_used_for_baking():
    """A model with no training cameras (a checkpoint loaded alone) is baked with views around its content."""
    from render3d.splat.baking import baked_for_classic_renderers

    generator = torch.Generator().manual_seed(0)
    params = init_params(torch.rand(300, 3, generator=generator) - 0.5, torch.rand(300, 3, generator=generator), 0)
    with torch.no_grad():
        params["scales"].fill_(-7.0)  # far below a pixel at 256 px: compensations well below 1
    model = GaussianSplats(params, 0, settings=RasterSettings(antialiased=True))
    baked = baked_for_classic_renderers(model)
    ratio = (baked.activated()["opacities"] / model.activated()["opacities"]).detach()
    assert baked.settings.antialiased is False and float(ratio.max()) < 0.5 and float(ratio.min()) > 0
    assert baked_for_classic_renderers(baked) is baked  # a classic model is left as it is
