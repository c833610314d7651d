"""The Trainer: learning, checkpoints, exact resume, interruption, divergence."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import resumed_matches_uninterrupted

from render3d.errors import Render3DError
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer, load_checkpoint


def small_splat_config(**overrides) -> SplatConfig:
    # of a 30k schedule: refine_start 7500 = step 10 and refine_stop 30000 = step 40 of a 40-step run
    base = dict(init_points=1500, init_scale=0.5, refine_start=7500, refine_stop=30000, refine_every=10, grow_grad2d=5e-5, sh_degree=1)
    return SplatConfig(**{**base, **overrides})


# the usual densification pace, for the tests that train long enough to judge quality
QUALITY_SCHEDULE = dict(refine_stop=15000, refine_every=50, grow_grad2d=2e-4)


def make_trainer(scene, tmp_path, steps: int, name: str = "run", backend: str = "torch", **overrides) -> Trainer:
    config = TrainConfig(steps=steps, out=str(tmp_path / name), save_every=0, progress=False, backend=backend)
    return Trainer(config, small_splat_config(**overrides), scene=scene)


@pytest.mark.slow
def test_training_reaches_a_psnr_floor_and_writes_the_run_folder(tiny_scene, tmp_path):
    trainer = make_trainer(tiny_scene, tmp_path, steps=300, **QUALITY_SCHEDULE)
    untrained = trainer.evaluate("test", write_images=False)["psnr"]
    metrics = trainer.run()
    assert metrics["psnr"] > 20.0, metrics["psnr"]
    assert metrics["psnr"] > untrained + 8.0
    assert 0.0 < metrics["ssim"] <= 1.0
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("psnr", "ssim", "steps", "train_seconds", "gaussians", "lpips"):
        assert key in saved
    assert saved["steps"] == 300 and saved["gaussians"] > 0
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 300
    renders = sorted((run / "renders" / "test").glob("*.png"))
    assert len(renders) == len(tiny_scene.test)
    import imageio.v3 as iio

    side_by_side = iio.imread(renders[0])
    assert side_by_side.shape == (32, 64, 3)
    assert load_checkpoint(run)["step"] == 300


def test_resume_continues_to_the_same_result(tiny_scene, tmp_path):
    resumed = resumed_matches_uninterrupted(lambda name: make_trainer(tiny_scene, tmp_path, steps=40, name=name), 20, tiny_scene)
    assert resumed.method.model.num_gaussians != 1500  # densification really happened in between


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_a_checkpoint_at_a_step_boundary(tiny_scene, tmp_path, signal_name):
    import os
    import signal

    from render3d.training import Callback, TrainingInterrupted

    class SignalAt7(Callback):
        def on_step_start(self, loop, step):
            if step == 7:  # arrives while step 7 runs: that step finishes, then the loop stops
                os.kill(os.getpid(), getattr(signal, signal_name))

    trainer = make_trainer(tiny_scene, tmp_path, steps=50)
    trainer.add_callback(SignalAt7())
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.run()
    assert stop.value.signal_name == signal_name and stop.value.exit_code == {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[signal_name]
    assert load_checkpoint(tmp_path / "run")["step"] == 8
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


def test_an_exception_inside_a_step_saves_nothing(tiny_scene, tmp_path, monkeypatch):
    """A step that fails half way may have changed some parameters: no checkpoint of it is written."""
    trainer = make_trainer(tiny_scene, tmp_path, steps=10)
    monkeypatch.setattr(trainer.method, "post_backward", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_divergence_stops_with_a_clear_error(tiny_scene, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_scene, tmp_path, steps=10)
    original = trainer.method.losses

    def nan_losses(step, batch):
        out = original(step, batch)
        out.losses["l1"] = out.losses["l1"] * float("nan")
        return out

    monkeypatch.setattr(trainer.method, "losses", nan_losses)
    with pytest.raises(Render3DError, match="diverged at step 0.*no checkpoint was written yet"):
        trainer.run()


def test_same_seed_same_result(tiny_scene, tmp_path):
    a = make_trainer(tiny_scene, tmp_path, steps=15, name="a")
    b = make_trainer(tiny_scene, tmp_path, steps=15, name="b")
    for t in (a, b):
        for _ in range(15):
            t.step_once()
    torch.testing.assert_close(a.method.model.params["means"], b.method.model.params["means"], rtol=0, atol=0)


def test_a_trainer_leaves_the_callers_random_state_alone(tiny_scene, tmp_path):
    """Building and training a run in Python neither reseeds nor advances torch's global stream, and random numbers
    drawn by the caller between steps do not change the run."""
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    a = make_trainer(tiny_scene, tmp_path, steps=6, name="a")
    for _ in range(6):
        a.step_once()
    assert torch.equal(torch.get_rng_state(), before)
    b = make_trainer(tiny_scene, tmp_path, steps=6, name="b")
    for _ in range(6):
        torch.rand(100)  # the caller's own draws
        b.step_once()
    torch.testing.assert_close(a.method.model.params["means"], b.method.model.params["means"], rtol=0, atol=0)


def test_mcmc_strategy_trains_on_cpu(tiny_scene, tmp_path):
    trainer = make_trainer(tiny_scene, tmp_path, steps=40, strategy="mcmc", cap_max=2000, init_opacity=0.5)
    before = trainer.evaluate("test", write_images=False)["psnr"]
    metrics = trainer.run()
    assert 1500 < metrics["gaussians"] <= 2000  # grew by relocation/sample-add, capped
    assert metrics["psnr"] > before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuda backend (gsplat kernels) needs a CUDA GPU")
@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_cuda_backend_trains_with_both_strategies(tiny_scene, tmp_path, strategy):
    trainer = make_trainer(
        tiny_scene, tmp_path, steps=300, backend="cuda", strategy=strategy, cap_max=3000,
        init_opacity=0.5 if strategy == "mcmc" else 0.1, **QUALITY_SCHEDULE,
    )
    assert trainer.method.model.params["means"].is_cuda
    metrics = trainer.run()
    assert metrics["psnr"] > 20.0, metrics["psnr"]


def test_strategy_presets_fill_only_unset_regularizers_and_the_run_records_them(tiny_scene, tmp_path):
    """mcmc's 0.01 opacity / scale L1 applies only where no value was given; an explicit 0 trains with 0."""
    from render3d.cli import build_parser
    from render3d.config_cli import config_from_args

    args = build_parser().parse_args(["train", "--splat.strategy", "mcmc", "--splat.opacity-reg", "0"])
    given = config_from_args(args, SplatConfig, prefix="splat.")
    assert (given.opacity_reg, given.scale_reg) == (0.0, 0.01)
    assert (SplatConfig().opacity_reg, SplatConfig(strategy="mcmc").opacity_reg) == (0.0, 0.01)
    trainer = make_trainer(tiny_scene, tmp_path, steps=1, strategy="mcmc", opacity_reg=0.0, cap_max=3000)
    trainer.run()
    assert trainer.method.config.opacity_reg == 0.0
    recorded = json.loads((trainer.run_dir / "config.json").read_text())
    assert json.dumps(recorded).count('"opacity_reg": 0.0') == 1 and json.dumps(recorded).count('"scale_reg": 0.01') == 1


def test_a_gaussian_budget_keeps_the_most_opaque(tiny_scene, tmp_path):
    """--splat.max-gaussians bounds the default strategy: a run that starts above it or grows past it is held at it,
    keeping the most opaque Gaussians (the optimiser state shrinks with them); the same run without it stays above."""
    grown = make_trainer(tiny_scene, tmp_path, steps=60, name="free")
    grown.run()
    capped = make_trainer(tiny_scene, tmp_path, steps=60, name="capped", max_gaussians=450)
    capped.run()
    assert grown.method.model.num_gaussians > 450
    assert capped.method.model.num_gaussians == 450
    state = capped.method.optimizers()["means"].state[capped.method.model.params["means"]]
    assert state["exp_avg"].shape[0] == 450


def test_a_negative_gaussian_budget_is_one_line_and_exit_2(capsys):
    from render3d.cli import main

    assert main(["train", "--splat.max-gaussians", "-1", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--splat.max-gaussians" in err, err


def test_a_trainer_keeps_the_callers_config_and_records_the_data_as_an_absolute_path(tiny_scene_dir, tmp_path, monkeypatch):
    """A trainer built in Python works on a copy: the caller's config keeps its relative data path."""
    monkeypatch.chdir(tiny_scene_dir.parent)
    config = TrainConfig(data=tiny_scene_dir.name, steps=1, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=100, sh_degree=0))
    assert config.data == tiny_scene_dir.name
    assert trainer.config.data == str(tiny_scene_dir.resolve())
