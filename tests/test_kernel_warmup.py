"""The CPU kernels compile ahead, at one point: nothing compiles afterwards, and a cold cache says so once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from render3d import kernel_warmup
from render3d.cpu_kernels import kernels_enabled
from render3d.nerf.method import NerfConfig
from render3d.splat.method import SplatConfig
from render3d.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not kernels_enabled(), reason="numba is not installed or RENDER3D_CPU_KERNELS=0")


def kernel_signatures() -> dict[str, int]:
    """How many specialisations each compiled kernel holds now."""
    from numba.core.registry import CPUDispatcher

    from render3d.nerf import encoding_numba
    from render3d.splat import project_numba, rasterize_numba

    return {f"{module.__name__}.{name}": len(kernel.signatures)
            for module in (rasterize_numba, project_numba, encoding_numba)
            for name, kernel in vars(module).items() if isinstance(kernel, CPUDispatcher)}


def check_nothing_compiles_after_the_warmup(scene_dir: str, out: str) -> None:
    """Splat and NeRF training, evaluation and every viewer mode use only what compile_all compiled."""
    from pathlib import Path

    from render3d.datasets import load_scene
    from render3d.protocol import render_preview
    from render3d.viewer.frames import VIEW_MODES

    scene = load_scene(scene_dir)
    kernel_warmup.compile_all()
    compiled = kernel_signatures()
    assert sum(compiled.values()) >= 8, compiled  # the workload reached the kernels
    quiet = dict(save_every=0, progress=False, backend="torch")
    splat = Trainer(TrainConfig(steps=3, out=str(Path(out) / "splat"), **quiet), SplatConfig(init_points=300, sh_degree=3),
                    scene=scene)
    splat.run()
    cameras = scene.test.cameras[0]
    with torch.no_grad():
        for mode in VIEW_MODES:
            splat.method.model.render(cameras, mode=mode)
            render_preview(splat.method.model, cameras, mode)
    nerf = Trainer(TrainConfig(method="nerf", steps=3, out=str(Path(out) / "nerf"), **quiet),
                   NerfConfig(levels=6, log2_table_size=12, max_resolution=64, hidden=32), scene=scene)
    nerf.run()
    assert kernel_signatures() == compiled


def test_nothing_compiles_after_the_warmup(tiny_scene_dir, tmp_path):
    """In a fresh process (this one's kernels may have compiled already): see check_nothing_compiles_after_the_warmup."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_kernel_warmup import check_nothing_compiles_after_the_warmup as c; "
              "c(sys.argv[2], sys.argv[3])")
    run = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__), str(tiny_scene_dir), str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def test_a_launch_waits_for_the_warmup_and_announces_a_long_one_once(monkeypatch):
    """The first launch blocks until the warm-up ends; one line is said when it outlasts QUIET_SECONDS."""
    from render3d import cpu_kernels

    release = threading.Event()
    monkeypatch.setattr(kernel_warmup, "compile_all", lambda stopped: release.wait(10))
    monkeypatch.setattr(kernel_warmup, "QUIET_SECONDS", 0.2)
    said: list[str] = []
    warmup = kernel_warmup.Warmup(said.append)
    monkeypatch.setattr(kernel_warmup, "_current", warmup)
    threading.Timer(0.6, release.set).start()
    start = time.perf_counter()
    for _ in range(2):
        with cpu_kernels.launch():
            pass
    assert warmup.done.is_set() and time.perf_counter() - start >= 0.5
    assert len(said) == 1 and "compiling the CPU kernels" in said[0]


def test_a_command_that_stops_during_the_warmup_exits_cleanly():
    """A bad option found while the warm-up runs: one line and exit status 2, not ``terminate called`` and an abort
    (the process used to end with the warm-up thread inside torch)."""
    command = [sys.executable, "-m", "render3d", "train", "--method", "nerf", "--nerf.appearance", "bilateral", "--steps", "1"]
    for _ in range(3):
        run = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert run.returncode == 2 and "terminate" not in run.stderr, run.stderr
        assert run.stderr.strip().startswith("error: --nerf.appearance")


def test_stop_skips_the_workloads_not_yet_begun(monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(kernel_warmup, "_splat_training_workload", lambda generator: ran.append("training"))
    monkeypatch.setattr(kernel_warmup, "_splat_render_workload", lambda generator: ran.append("render"))
    monkeypatch.setattr(kernel_warmup, "_nerf_workload", lambda generator: ran.append("nerf"))
    kernel_warmup.compile_all(lambda: len(ran) >= 1)
    assert ran == ["training"]


def test_a_quick_warmup_says_nothing(monkeypatch):
    """A warm cache (the warm-up ends at once) prints nothing."""
    monkeypatch.setattr(kernel_warmup, "compile_all", lambda stopped: None)
    said: list[str] = []
    warmup = kernel_warmup.Warmup(said.append)
    warmup.wait()
    assert said == []


@pytest.mark.slow
def test_cold_cache_run_announces_compilation_and_a_warm_one_does_not(tmp_path):
    """``render3d train`` with an empty NUMBA_CACHE_DIR says it compiles (once); the next run, cached, says nothing."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "render3d", "train", "--steps", "2", "--no-progress", "--out", str(tmp_path / "run"), "--overwrite"]
    runs = [subprocess.run(command, env=env, capture_output=True, text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stderr.count("compiling the CPU kernels") == 1, runs[0].stderr
    assert "compiling the CPU kernels" not in runs[1].stderr, runs[1].stderr
    assert any((tmp_path / "cache").rglob("*.nbi")), "numba wrote its cache where NUMBA_CACHE_DIR points"


def test_the_warmup_leaves_the_global_random_stream_alone():
    """It runs beside a seeded main thread (every rank of a distributed run): torch's global RNG must not move."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    kernel_warmup.compile_all()
    assert torch.equal(torch.get_rng_state(), state)


def check_viewer_renders_do_not_stall_training(scene_dir: str, out: str) -> None:
    """As ``render3d train --viewer`` on a fresh install: a viewer thread renders every mode from step 5 on; no gap
    between training steps (after the first) reaches 3 s. An end-to-end guard: today the viewer needs no kernel
    specialisation that training has not compiled, so it holds without the warm-up too; a new viewer-only one would
    also fail ``check_nothing_compiles_after_the_warmup`` unless the warm-up compiles it."""
    from pathlib import Path

    import numpy as np

    from render3d.datasets import load_scene
    from render3d.training import Callback
    from render3d.viewer.camera import pose_of
    from render3d.viewer.device_share import DeviceShare
    from render3d.viewer.frames import VIEW_MODES
    from render3d.viewer.render_loop import SceneRenderer, ViewSettings
    from render3d.viewer.source import from_trainer

    kernel_warmup.start()  # what the CLI does first
    scene = load_scene(scene_dir)
    times: list[float] = []
    viewer_done = threading.Event()

    class Clock(Callback):
        def on_step_end(self, loop, event) -> None:
            times.append(time.perf_counter())
            if event.step == 5:
                threading.Thread(target=view, daemon=True).start()

    trainer = Trainer(TrainConfig(steps=60, out=str(Path(out) / "run"), save_every=0, progress=False, backend="torch"),
                      SplatConfig(init_points=300), scene=scene, callbacks=[Clock()])
    content = from_trainer(trainer)
    renderer = SceneRenderer(content, DeviceShare(content.lock))
    pose = pose_of(scene.test.cameras, 0)

    def view() -> None:
        for mode in VIEW_MODES:
            for moving in (True, False):
                renderer.render(pose, 48, ViewSettings(mode=mode), moving=moving)
        viewer_done.set()

    trainer.run()
    assert viewer_done.wait(60), "the viewer thread rendered every mode"
    gaps = np.diff(times[1:])
    assert gaps.max() < 3.0, f"training stalled {gaps.max():.1f} s between two steps"


@pytest.mark.slow
def test_viewer_renders_do_not_stall_training_on_a_cold_cache(tiny_scene_dir, tmp_path):
    """In a fresh process with an empty NUMBA_CACHE_DIR: see check_viewer_renders_do_not_stall_training."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_kernel_warmup import check_viewer_renders_do_not_stall_training as c; "
              "c(sys.argv[2], sys.argv[3])")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__), str(tiny_scene_dir), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
