"""Fault tests of the safety issue: a malicious pickle never runs.

Every command (``eval``, ``render``, ``export``, ``view``, ``train --resume`` and the ``zoo`` ones), the
viewer's loader and the zoo's feature-classifier cache refuse a checkpoint whose pickle would run code,
with one ``error:`` line, while every checkpoint render3d writes itself (splat, NeRF, each zoo model,
the classifier cache) still loads with ``weights_only``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safety_helpers import assert_one_line, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


@pytest.fixture(scope="module")
def nerf_run(tmp_path_factory, tiny_scene) -> Path:
    from render3d.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("safety") / "nerf"
    config = TrainConfig(data=str(tiny_scene.root), method="nerf", steps=3, out=str(out), save_every=0, progress=False, backend="torch")
    Trainer(config, small_nerf(), scene=tiny_scene).run()
    return out


def small_nerf():
    from render3d.nerf.method import NerfConfig

    return NerfConfig(levels=4, log2_table_size=10, max_resolution=32, hidden=16, samples_per_ray=24, target_samples=1024,
                      initial_rays=128, grid_resolution=8, grid_warmup=4, grid_every=4)


def tiny_image_data():
    from render3d.zoo.data import ImageData

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 8, 8), generator=g, dtype=torch.uint8)
    return ImageData("noise", images[:18], images[18:], note="test noise")


class _OpensAFile:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path, zoo: bool = False) -> Path:
    """A file shaped like our checkpoints whose pickle creates ``marker`` when loaded with pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if zoo:
        data = {"version": 1, "kind": "zoo", "model": "ae", "model_config": {}, "spec": {"channels": 1, "size": 8},
                "state": _OpensAFile(marker), "info": {}}
    else:
        data = {"version": 2, "method": "splat", "config": {}, "method_config": {}, "step": 1,
                "method_state": _OpensAFile(marker), "loss_terms": [], "rng": {}}
    torch.save(data, path)
    return path


def test_the_malicious_file_really_runs_code_when_unpickled(tmp_path):
    """The fixture is real: plain ``torch.load`` (what the old loaders did) creates the marker."""
    marker = tmp_path / "pwned"
    file = malicious_checkpoint(tmp_path / "checkpoint.pt", marker)
    torch.load(file, weights_only=False)
    assert marker.exists()


HOSTILE_COMMANDS = {
    "eval": (False, ["eval", "{run}"]),
    "render": (False, ["render", "{run}", "--no-progress"]),
    "export": (False, ["export", "{run}", "--format", "ply"]),
    "view": (False, ["view", "{run}"]),
    "train --resume": (False, ["train", "--resume", "{run}"]),
    "zoo sample": (True, ["zoo", "sample", "{run}", "--out", "{tmp}/grid.png"]),
    "zoo compare": (True, ["zoo", "compare", "{run}", "--out", "{tmp}/report"]),
    "zoo train --resume": (True, ["zoo", "train", "--resume", "{run}"]),
}


@pytest.mark.parametrize("command", list(HOSTILE_COMMANDS))
def test_a_malicious_checkpoint_is_refused_by_every_command(command, tmp_path, capsys, monkeypatch):
    import render3d.viewer.server as server

    monkeypatch.setattr(server, "start_viewer", lambda *a, **k: pytest.fail("the viewer started on a hostile file"))
    zoo, args = HOSTILE_COMMANDS[command]
    run, marker = tmp_path / "run", tmp_path / "pwned"
    malicious_checkpoint(run / ("model.pt" if zoo else "checkpoint.pt"), marker, zoo=zoo)
    code, _, err = run_cli(capsys, *[a.format(run=run, tmp=tmp_path) for a in args])
    assert code == 2
    assert_one_line(err, "refusing to load", str(run))
    assert not marker.exists(), "the pickle ran"


def test_the_viewer_loader_refuses_a_malicious_checkpoint(tmp_path):
    from render3d.errors import Render3DError
    from render3d.viewer.source import load_content

    marker = tmp_path / "pwned"
    file = malicious_checkpoint(tmp_path / "run" / "checkpoint.pt", marker)
    for target in (file.parent, file):
        with pytest.raises(Render3DError, match="refusing to load"):
            load_content(str(target), "torch")
    assert not marker.exists()


def test_a_malicious_feature_classifier_cache_is_refused(tmp_path):
    from render3d.errors import Render3DError
    from render3d.zoo.metrics import _cache_file, feature_classifier

    data, marker = tiny_image_data(), tmp_path / "pwned"
    malicious_checkpoint(_cache_file(data, tmp_path, 3), marker)
    with pytest.raises(Render3DError, match="refusing to load .*feature-classifier cache"):
        feature_classifier(data, steps=3, cache_dir=tmp_path)
    assert not marker.exists()


def test_checkpoints_written_by_render3d_load_weights_only(splat_run, nerf_run, zoo_run, tmp_path):
    from render3d.checkpoints import load_weights
    from render3d.runs import load_run
    from render3d.zoo.base import ImageSpec, read_checkpoint, registry
    from render3d.zoo.metrics import feature_classifier

    for run, method in ((splat_run, "splat"), (nerf_run, "nerf")):
        assert load_run(run, "torch").method == method
        load_weights(run / "checkpoint.pt")  # the resumable part too: optimisers, RNG states, history
    assert read_checkpoint(zoo_run)["info"]["steps"] == 2
    x = torch.rand(4, 1, 8, 8)
    configs = {"vqvae": {"codes": 8, "code_dim": 4, "prior_dim": 8, "prior_layers": 1, "prior_heads": 2}, "pixelcnn": {"blocks": 1},
               "diffusion": {"timesteps": 20, "sample_steps": 2}}
    for name, cls in registry().items():  # every zoo model, with its optimisers' state after one step
        model = cls(cls.config_type(**{"hidden": 8, **configs.get(name, {})}), ImageSpec(1, 8, 0))
        model.fit(x)
        model.save(tmp_path / f"{name}.pt")
        assert read_checkpoint(tmp_path / f"{name}.pt")["model"] == name
    data = tiny_image_data()
    first = feature_classifier(data, steps=2, cache_dir=tmp_path / "cache")
    assert feature_classifier(data, steps=2, cache_dir=tmp_path / "cache").info == first.info  # read back from the cache
