"""``render3d.load``: one verb for every trained model, picked from what the folder or file holds."""

from __future__ import annotations

import pytest
import torch

import render3d
from render3d.errors import Render3DError
from render3d.loading import checkpoint_kind
from render3d.protocol import SceneModel
from render3d.zoo import ZooModel


def test_a_scene_run_its_checkpoint_and_its_ply_load_as_scene_models(splat_run, tmp_path):
    from render3d.splat import save_ply

    model = render3d.load(splat_run, backend="torch")
    assert isinstance(model, SceneModel) and checkpoint_kind(splat_run / "checkpoint.pt") == "scene"
    save_ply(model, tmp_path / "scene.ply")
    from_ply = render3d.load(tmp_path / "scene.ply", backend="torch")
    assert from_ply.num_gaussians == model.num_gaussians


def test_a_zoo_run_loads_as_a_zoo_model(zoo_run):
    model = render3d.load(zoo_run)
    assert isinstance(model, ZooModel) and checkpoint_kind(zoo_run) == "zoo"
    assert model.sample(2).shape[0] == 2


@pytest.mark.parametrize("content", ["nothing", "junk", "foreign"])
def test_what_holds_no_model_is_a_one_line_error_naming_it(tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "junk":
        path.write_bytes(b"not a checkpoint")
    elif content == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(Render3DError) as caught:
        render3d.load(tmp_path)
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
