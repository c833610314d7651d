"""Fault tests of the safety issue: runs are never silently overwritten.

``train`` and ``zoo train`` refuse an existing ``--out`` folder unless ``--overwrite`` is given, and runs
started in the same second each claim a folder of their own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from safety_helpers import SPLAT_FLAGS, assert_one_line, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


def test_train_refuses_an_existing_out_folder_unless_overwrite(splat_run, tiny_scene_dir, tmp_path, capsys):
    import shutil

    from render3d.train import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(splat_run, run)
    before = (run / "checkpoint.pt").read_bytes()
    flags = [str(tiny_scene_dir), "--steps", "2", "--out", str(run), *SPLAT_FLAGS]
    code, _, err = run_cli(capsys, "train", *flags)
    assert code == 2
    assert_one_line(err, str(run), "--resume", "--overwrite")
    assert (run / "checkpoint.pt").read_bytes() == before
    code, _, err = run_cli(capsys, "train", *flags, "--overwrite")
    assert code == 0, err
    assert load_checkpoint(run)["step"] == 2


def test_zoo_train_refuses_an_existing_out_folder_unless_overwrite(zoo_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "zoo"
    shutil.copytree(zoo_run, run)
    before = (run / "model.pt").read_bytes()
    flags = ["zoo", "train", "ae", "--data", str(zoo_run.parent / "images"), "--size", "8", "--steps", "2", "--batch-size", "4",
             "--out", str(run), "--ae.hidden", "8", "--ae.latent", "4", "--no-progress"]
    code, _, err = run_cli(capsys, *flags)
    assert code == 2
    assert_one_line(err, str(run), "--resume", "--overwrite")
    assert (run / "model.pt").read_bytes() == before
    code, _, err = run_cli(capsys, *flags, "--overwrite")
    assert code == 0, err
    assert (run / "model.pt").read_bytes() != before


def test_runs_started_in_the_same_second_get_their_own_folders(tiny_scene_dir, tmp_path, monkeypatch):
    """Every trainer (3D, zoo, video) names its folder through run_dir_for, which claims a free one."""
    from render3d.train import TrainConfig, default_run_dir
    from render3d.training.run_dir import run_dir_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda *args: "20260101-000000")  # the same second, for sure
    default = default_run_dir(TrainConfig(data=str(tiny_scene_dir)))
    first, second = (run_dir_for(None, default, "checkpoint.pt", resuming=False, overwrite=False) for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == Path("runs")
