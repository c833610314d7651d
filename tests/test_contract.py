"""The training contract: a plug-in method, plug-in loss terms, exact resume with terms on,
time budgets, capabilities, and the one run loader for every kind of input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor

from helpers import resumed_matches_uninterrupted
from render3d.cli import main
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.losses import LossConfig, LossContext, LossTerm
from render3d.losses.depth import DepthLoss
from render3d.losses.mask import MaskLoss
from render3d.registry import reload_plugins
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer

PLUGIN_FOLDER = Path(__file__).parent / "plugin_example"


def splat_config(**overrides) -> SplatConfig:
    base = dict(init_points=1500, init_scale=0.5, refine_start=7500, refine_stop=30000, refine_every=10, grow_grad2d=5e-5, sh_degree=1)
    return SplatConfig(**{**base, **overrides})


def trainer(scene, tmp_path, name: str, steps: int, method_config=None, **config) -> Trainer:
    settings = dict(steps=steps, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
    return Trainer(TrainConfig(**{**settings, **config}), method_config or splat_config(), scene=scene)


# ----- adding a method -------------------------------------------------------------------------


@pytest.fixture
def flat_plugin(monkeypatch):
    """The example plug-in package on sys.path, as if pip-installed."""
    monkeypatch.syspath_prepend(str(PLUGIN_FOLDER))
    reload_plugins()
    yield
    monkeypatch.undo()
    reload_plugins()


def test_a_plugin_method_trains_renders_and_evaluates_through_every_command(flat_plugin, tiny_scene_dir, tiny_scene, tmp_path, capsys):
    run = tmp_path / "flat"
    assert main(["train", str(tiny_scene_dir), "--method", "flat", "--flat.lr", "0.1", "--steps", "60", "--out", str(run),
                 "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "flat" and metrics["steps"] == 60
    config = json.loads((run / "config.json").read_text())
    assert config["flat"] == {"lr": 0.1}  # its own options came from the generated CLI
    assert main(["eval", str(run)]) == 0
    assert main(["render", str(run), "--path", "orbit", "--seconds", "1", "--fps", "4", "--out", str(tmp_path / "o.mp4"), "--no-progress"]) == 0
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "o.mp4")
    assert frames.shape[0] == 4
    mean_color = torch.from_numpy(frames[0].reshape(-1, 3).astype("float32").mean(0) / 255)
    data_mean = tiny_scene.train.images.float().mean((0, 1, 2)) / 255
    torch.testing.assert_close(mean_color, data_mean, atol=0.05, rtol=0)  # it learned the mean colour
    assert main(["export", str(run), "--format", "ply"]) == 2  # no Gaussians: one line, exit 2
    assert "needs Gaussians" in capsys.readouterr().err


def test_without_the_plugin_the_method_is_unknown_with_the_choices_listed(tiny_scene_dir, tmp_path, capsys):
    assert main(["train", str(tiny_scene_dir), "--method", "flat", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'flat'" in err and "splat" in err and "nerf" in err


# ----- adding a loss term -----------------------------------------------------------------------


@dataclass
class ColorPriorConfig(LossConfig):
    target: float = option("grey level renders are pulled toward", default=0.5)


class ColorPrior(LossTerm):
    """The example loss term of docs/extending.md."""

    name = "colour-prior"
    description = "pull rendered colours toward a grey level"
    config_type = ColorPriorConfig

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        return {"colour_prior": (ctx.output.outputs["rgb"] - self.config.target).abs().mean()}


def test_a_loss_term_from_python_enters_the_loss_and_changes_the_result(tiny_scene, tmp_path):
    plain = trainer(tiny_scene, tmp_path, "plain", 40)
    pulled = Trainer(TrainConfig(steps=40, out=str(tmp_path / "grey"), save_every=0, progress=False, backend="torch"), splat_config(),
                     scene=tiny_scene, loss_terms=[ColorPrior(ColorPriorConfig(weight=5.0, target=0.5))])
    plain.run()
    result = pulled.run()
    assert "loss/colour_prior" in pulled.history[-1] and result["loss_terms"] == ["colour-prior"]
    cam = tiny_scene.test.cameras[0]
    gray = lambda t: float((t.method.model.render(cam).rgb - 0.5).abs().mean())  # noqa: E731
    assert gray(pulled) < gray(plain) - 0.02  # measured: 0.298 against 0.339


def test_weight_schedules_start_stop_and_anneal():
    config = LossConfig(weight=1.0, final_weight=0.0, start=0.2, stop=0.6)
    assert config.weight_at(0, 100) == 0.0 and config.weight_at(70, 100) == 0.0
    assert config.weight_at(20, 100) == pytest.approx(1.0) and config.weight_at(40, 100) == pytest.approx(0.5)


def test_loss_spec_errors_are_one_line(tiny_scene):
    from render3d.losses import build_loss_terms

    for spec, message in [("depth:x", "must be a number"), ("depth:-1", ">= 0"), ("blur", "unknown loss term 'blur'"),
                          ("depth,depth", "twice")]:
        with pytest.raises(Render3DError, match=message):
            build_loss_terms(spec)


def test_terms_refuse_data_without_what_they_need(tiny_scene):
    from dataclasses import replace

    no_depth = replace(tiny_scene, train=replace(tiny_scene.train, depths=None, alpha=None, masks=None))
    with pytest.raises(Render3DError, match="--loss depth needs depth maps"):
        DepthLoss().setup(no_depth, 0)
    with pytest.raises(Render3DError, match="--loss mask needs alpha or masks"):
        MaskLoss().setup(no_depth, 0)


@pytest.mark.parametrize("method", ["splat", "nerf"])
def test_resume_with_loss_terms_is_bit_identical(tiny_scene, tmp_path, method):
    from test_nerf import small_nerf

    method_config = splat_config() if method == "splat" else small_nerf("nerf")
    make = lambda name: trainer(tiny_scene, tmp_path, name, 40, method_config, method=method, loss="depth:0.2,mask:0.05")  # noqa: E731
    resumed = resumed_matches_uninterrupted(make, 20, tiny_scene)
    assert [t.name for t in resumed.loss_terms] == ["depth", "mask"] and resumed.loss_terms[0].config.weight == 0.2


def test_depth_and_mask_terms_improve_what_they_supervise(tiny_scene, tmp_path):
    """Same run with and without each term: depth error and coverage error on the test views go down."""
    def errors(t: Trainer) -> tuple[float, float]:
        depth, coverage = [], []
        split = t.scene.test
        for i in range(len(split)):
            out = t.method.model.render(split.cameras[i])
            known = split.depths[i] > 0
            depth.append(float((out.depth[0, ..., 0] - split.depths[i]).abs()[known].mean()))
            coverage.append(float((out.alpha[0, ..., 0] - split.alpha[i, ..., 0].float() / 255).abs().mean()))
        return sum(depth) / len(depth), sum(coverage) / len(coverage)

    runs = {}
    for loss in ("", "depth:0.5", "mask:0.2"):
        quality = splat_config(refine_stop=15000, refine_every=50, grow_grad2d=2e-4)
        t = trainer(tiny_scene, tmp_path, loss.replace(":", "-") or "none", 150, quality, loss=loss)
        t.run()
        runs[loss.split(":")[0]] = errors(t)
    assert runs["depth"][0] < 0.9 * runs[""][0], runs  # measured: 0.130 against 0.155
    assert runs["mask"][1] < 0.9 * runs[""][1], runs  # measured: 0.031 against 0.039


def test_a_time_budget_stops_training_with_the_usual_outputs(tiny_scene, tmp_path):
    t = trainer(tiny_scene, tmp_path, "budget", 100_000, max_seconds=1.0)
    metrics = t.run()
    assert 0 < metrics["steps"] < 100_000 and metrics["train_seconds"] >= 1.0
    assert (tmp_path / "budget" / "checkpoint.pt").exists() and (tmp_path / "budget" / "metrics.json").exists()


def test_a_time_budget_plans_the_whole_schedule(tiny_scene, tmp_path):
    """A budget that ends long before --steps still runs the schedule to its end: the planned step reaches the last
    step, the position learning rate its final hundredth, the SH degree its top; a step-only run plans nothing."""
    t = trainer(tiny_scene, tmp_path, "planned", 5000, splat_config(sh_degree=2), max_seconds=2.0)
    metrics = t.run()
    # the last step plans from the share of the budget used when it starts: near the end, not at it
    assert metrics["steps"] < 2500 and metrics["planned_steps"] >= 3750, metrics
    lr0 = t.method.config.lr_means * t.method.scene_scale
    assert t.method.optimizers()["means"].param_groups[0]["lr"] < 0.05 * lr0
    assert t.method.model.active_sh_degree == 2
    plain = trainer(tiny_scene, tmp_path, "plain", 12)
    assert plain.run()["planned_steps"] == 12


def test_a_planned_run_densifies_every_n_real_steps(tiny_scene, tmp_path):
    """Planned steps may move several at a time (here 2.5 per step); densification, due every 10 steps, happens
    every 10 real steps, each time at a multiple of 10 of the planned schedule, and at no other step."""
    t = trainer(tiny_scene, tmp_path, "planned-events", 300, splat_config(refine_start=0))
    t.planned_step = lambda: int(2.5 * t.step)
    seen, post_backward = [], t.method.strategy.step_post_backward
    t.method.strategy.step_post_backward = lambda *args, **kwargs: seen.append(args[3]) or post_backward(*args, **kwargs)
    for _ in range(60):  # planned steps 0, 2, 5, 7, ..., 147
        t.step_once()
    assert [step for step in seen if step % 10 == 0] == [0, 20, 50, 70, 100, 120]


@pytest.mark.parametrize("final", [0.01, 0.1])
def test_the_position_learning_rate_decays_to_its_final_share(tiny_scene, tmp_path, final):
    t = trainer(tiny_scene, tmp_path, f"lr-{final}", 10, splat_config(lr_means_final=final))
    lr0 = t.method.config.lr_means * t.method.scene_scale
    for step, share in ((0, 1.0), (5, final ** 0.5), (10, final)):
        t.method.before_step(step)
        assert t.method.optimizers()["means"].param_groups[0]["lr"] == pytest.approx(lr0 * share)


@pytest.mark.parametrize("value", ["0", "1.5", "nan"])
def test_a_bad_final_position_learning_rate_is_one_line_and_exit_2(value, capsys):
    from render3d.cli import main

    assert main(["train", "--splat.lr-means-final", value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--splat.lr-means-final" in err


@pytest.mark.parametrize("field, value", [("steps", -3), ("steps", 0), ("max_seconds", float("nan")), ("grad_clip", -1.0), ("eval_every", -1)])
def test_bad_training_options_are_one_line_errors(tiny_scene, tmp_path, field, value):
    with pytest.raises(Render3DError, match="must be"):
        Trainer(TrainConfig(**{field: value}, out=str(tmp_path / "bad")), splat_config(), scene=tiny_scene)


# ----- capabilities and the run loader ------------------------------------------------------------


def test_models_declare_their_capabilities(tiny_scene, tmp_path):
    from render3d.protocol import Bounded, Croppable, HasGaussians, HasNormals, Meshable, SceneModel
    from test_nerf import small_nerf

    splats = trainer(tiny_scene, tmp_path, "s", 1).method.model
    nerf = trainer(tiny_scene, tmp_path, "n", 1, small_nerf("nerf"), method="nerf").method.model
    assert all(isinstance(splats, c) for c in (SceneModel, HasGaussians, Croppable, HasNormals, Bounded))
    assert not isinstance(splats, Meshable)
    assert all(isinstance(nerf, c) for c in (SceneModel, Meshable, Bounded))
    assert not any(isinstance(nerf, c) for c in (HasGaussians, Croppable, HasNormals))
    g = splats.gaussians()
    assert len(g) == splats.num_gaussians and g.covariances().shape == (len(g), 3, 3) and g.sh_degree == 1


@pytest.fixture(scope="module")
def splat_run(tmp_path_factory, tiny_scene):
    out = tmp_path_factory.mktemp("runs") / "splat"
    Trainer(TrainConfig(steps=30, out=str(out), save_every=0, progress=False, backend="torch"), splat_config(), scene=tiny_scene).run()
    return out


def test_the_run_loader_takes_folders_checkpoints_ply_and_splat_files(splat_run, tmp_path):
    from render3d.runs import load_run
    from render3d.splat.ply import save_ply, save_splat

    folder = load_run(splat_run, "torch")
    assert folder.method == "splat" and folder.step == 30 and folder.scene is not None
    assert load_run(splat_run / "checkpoint.pt", "torch").run_dir == splat_run
    save_ply(folder.model, tmp_path / "s.ply")
    save_splat(folder.model, tmp_path / "s.splat")
    for name in ("s.ply", "s.splat"):
        loaded = load_run(tmp_path / name, "torch")
        assert loaded.scene is None and loaded.model.num_gaussians == folder.model.num_gaussians
        assert loaded.run_dir == Path("runs") / "s" and (loaded.bounds[1] > loaded.bounds[0]).all()
    with pytest.raises(Render3DError, match="without cameras or images"):
        load_run(tmp_path / "s.ply", "torch", dataset="required")
    with pytest.raises(Render3DError, match="does not exist"):
        load_run(tmp_path / "missing", "torch")


def test_render_and_export_a_bare_ply(splat_run, tmp_path, capsys):
    import imageio.v3 as iio


    ply = tmp_path / "scene.ply"
    assert main(["export", str(splat_run), "--format", "ply", "--out", str(ply)]) == 0
    out = tmp_path / "o.mp4"
    assert main(["render", str(ply), "--path", "orbit", "--seconds", "2", "--fps", "10", "--resolution", "32", "--out", str(out),
                 "--no-progress"]) == 0
    frames = iio.imread(out)
    assert frames.shape == (20, 32, 32, 3) and frames.std() > 5  # the Gaussians are in view, not a blank frame
    again = tmp_path / "again.ply"
    assert main(["export", str(ply), "--format", "ply", "--out", str(again)]) == 0
    assert again.read_bytes() == ply.read_bytes()  # re-exported byte for byte
    assert main(["export", str(ply), "--format", "pointcloud", "--out", str(tmp_path / "p.ply")]) == 0
    assert main(["eval", str(ply)]) == 2
    assert "without cameras or images" in capsys.readouterr().err
    assert main(["render", str(ply), "--path", "spiral", "--out", str(tmp_path / "s.mp4")]) == 2
    assert "needs the training cameras" in capsys.readouterr().err


def test_an_uninstalled_source_checkout_finds_its_own_plugins(monkeypatch):
    """Running from a source folder on PYTHONPATH (no installed metadata): pyproject.toml lists our plug-ins."""
    import importlib.metadata

    import render3d.registry as registry

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    reload_plugins()
    try:
        assert {"splat", "nerf", "vanilla-nerf"} <= set(registry.METHODS.names())
        assert registry.METHODS.get("splat").__name__ == "SplatMethod"
        assert "train" in registry.COMMANDS.names() and "depth" in registry.LOSS_TERMS.names()
    finally:
        monkeypatch.undo()
        reload_plugins()


def test_a_plugin_that_does_not_import_is_left_out_with_a_warning_and_named_when_asked_for(monkeypatch, capsys):
    """A broken (or outdated) third-party entry point must not take the CLI down."""
    from importlib.metadata import EntryPoint

    import render3d.registry as registry
    from render3d.cli import main

    installed = registry.entry_points
    broken = {
        "render3d.loss_terms": EntryPoint(name="broken-term", value="render3d_no_such_plugin:Term", group="render3d.loss_terms"),
        "render3d.commands": EntryPoint(name="broken-command", value="render3d_no_such_plugin:add", group="render3d.commands"),
    }
    monkeypatch.setattr(registry, "entry_points", lambda group: list(installed(group=group)) + ([broken[group]] if group in broken else []))
    reload_plugins()
    try:
        with pytest.warns(RuntimeWarning, match="broken-term.*does not load.*ModuleNotFoundError"):
            names = [name for name, _ in registry.LOSS_TERMS.items()]
        assert "broken-term" not in names and "depth" in names
        with pytest.raises(Render3DError, match="broken-term.*render3d_no_such_plugin:Term.*does not load"):
            registry.LOSS_TERMS.get("broken-term")
        with pytest.warns(RuntimeWarning, match="broken-command"):
            assert main(["train", "--loss", "broken-term", "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "broken-term" in err and "Traceback" not in err
    finally:
        monkeypatch.undo()
        reload_plugins()


@pytest.mark.parametrize("package", ["render3d.splat", "render3d.nerf", "render3d.export", "render3d.camera_paths"])
def test_public_packages_export_their_names(package):
    """``from render3d.splat import GaussianSplats`` and the like: every name in ``__all__`` resolves, unknown ones fail."""
    import importlib

    module = importlib.import_module(package)
    assert module.__all__ and all(getattr(module, name) is not None for name in module.__all__)
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name")
