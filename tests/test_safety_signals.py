"""Fault tests of the safety issue: signals, then ``--resume``, reproduce the run.

``SIGTERM`` (a 3D run) and ``SIGHUP`` (a zoo run) stop training with one line naming the ``--resume``
command, and resuming from another working folder ends bit for bit where an uninterrupted run does; a
``SIGTERM`` during the final evaluation stops at once and keeps the finished checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from safety_helpers import PYTHON, SPLAT_FLAGS, cli_env, image_folder, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


def interrupt_once_saved(cmd: list[str], checkpoint: Path, sig: int, cwd: Path, attempts: int = 3) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` as soon as ``checkpoint`` exists (the loop handles signals by then), wait.

    A run that got through all its steps before the signal landed (a very slow poll on a busy
    machine: it then exits 0, or dies of the signal during its final evaluation, after the loop
    stopped listening) is started again.
    """
    import shutil

    for _ in range(attempts):
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if proc.returncode not in (0, -sig):
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        shutil.rmtree(checkpoint.parent)
    pytest.fail(f"{cmd} never handled the signal in {attempts} tries (last exit status {proc.returncode}): {err[-1000:]}")


def assert_same_state(a, b, where: str = "") -> None:
    """Nested dicts / lists of tensors and numbers, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, set(a) ^ set(b))
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow
def test_sigterm_then_resume_from_another_folder_reproduces_the_run(tiny_scene_dir, tmp_path):
    from render3d.train import load_checkpoint

    a, b, elsewhere = tmp_path / "A", tmp_path / "B", tmp_path / "elsewhere"
    elsewhere.mkdir()
    train = [PYTHON, "-m", "render3d", "train"]
    full = subprocess.Popen(train + [str(tiny_scene_dir), "--steps", "40", "--out", str(a), *SPLAT_FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    # B names its dataset relative to its working folder; --save-every 1 writes the checkpoint the poll waits for
    stopped = interrupt_once_saved(train + [tiny_scene_dir.name, "--steps", "40", "--out", str(b), "--save-every", "1", *SPLAT_FLAGS],
                                   b / "checkpoint.pt", signal.SIGTERM, cwd=tiny_scene_dir.parent)
    assert stopped.returncode == 143, stopped.stderr
    assert "Traceback" not in stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and f"render3d train --resume {b}" in lines[0], stopped.stderr
    step = load_checkpoint(b)["step"]
    assert 1 <= step < 40
    resumed = subprocess.run(train + ["--resume", str(b), "--save-every", "1000"], cwd=elsewhere, capture_output=True, text=True,
                             env=cli_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert full.wait(timeout=300) == 0, full.stderr.read()[-2000:]
    done_a, done_b = load_checkpoint(a), load_checkpoint(b)
    assert done_a["step"] == done_b["step"] == 40
    assert done_b["config"]["data"] == str(tiny_scene_dir.resolve())
    assert done_a["method_state"]["model"]["params"]["means"].shape[0] > 100  # it densified after the interruption
    assert_same_state(done_a["method_state"], done_b["method_state"], "method_state")
    assert_same_state(done_a["rng"], done_b["rng"], "rng")


@pytest.mark.slow
def test_sighup_then_resume_reproduces_a_zoo_run(tmp_path):
    from render3d.zoo.base import read_checkpoint

    images = image_folder(tmp_path / "images")
    a, b, elsewhere = tmp_path / "A", tmp_path / "B", tmp_path / "elsewhere"
    elsewhere.mkdir()
    train = [PYTHON, "-m", "render3d", "zoo", "train"]
    flags = ["--size", "8", "--steps", "8", "--batch-size", "4", "--no-progress", "--ae.hidden", "8", "--ae.latent", "4"]
    full = subprocess.Popen(train + ["ae", "--data", str(images), "--out", str(a), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    stopped = interrupt_once_saved(train + ["ae", "--data", images.name, "--out", str(b), "--save-every", "1", *flags],
                                   b / "model.pt", signal.SIGHUP, cwd=tmp_path)
    assert stopped.returncode == 129, stopped.stderr
    assert "Traceback" not in stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by SIGHUP" in lines[0] and f"render3d zoo train --resume {b}" in lines[0], stopped.stderr
    assert 1 <= read_checkpoint(b)["info"]["steps"] < 8
    resumed = subprocess.run(train + ["--resume", str(b), "--save-every", "1000"], cwd=elsewhere, capture_output=True, text=True,
                             env=cli_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert full.wait(timeout=300) == 0, full.stderr.read()[-2000:]
    done_a, done_b = read_checkpoint(a), read_checkpoint(b)
    assert done_a["info"]["steps"] == done_b["info"]["steps"] == 8
    assert_same_state(done_a["state"], done_b["state"], "state")
    assert_same_state(done_a["optimizers"], done_b["optimizers"], "optimizers")


def test_sigterm_during_the_final_evaluation_stops_at_once_and_keeps_the_finished_checkpoint(tiny_scene_dir, tmp_path, capsys,
                                                                                              monkeypatch):
    from render3d.train import Trainer, load_checkpoint

    def finish(self):
        os.kill(os.getpid(), signal.SIGTERM)  # as if sent while the test views render
        time.sleep(5)  # (the handler raises before this ends)
        raise AssertionError("the signal did not stop the evaluation")

    monkeypatch.setattr(Trainer, "finish", finish)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", str(tiny_scene_dir), "--steps", "3", "--out", str(run), *SPLAT_FLAGS)
    assert code == 143, err
    assert "during the final evaluation" in err and "Traceback" not in err
    assert load_checkpoint(run)["step"] == 3 and not (run / "metrics.json").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are removed again
