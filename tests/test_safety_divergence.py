"""Fault tests of the safety issue: divergence.

A training run whose loss turns NaN stops with one line that says whether a checkpoint was written and,
if one was, names the last good one and keeps it.
"""

from __future__ import annotations

import pytest

from safety_helpers import SPLAT_FLAGS, assert_one_line, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


def nan_from(step: int, losses):
    """A ``method.losses`` whose loss turns NaN from ``step`` on."""

    def diverging(self, at, batch):
        out = losses(self, at, batch)
        if at >= step:
            out.losses = {name: value * float("nan") for name, value in out.losses.items()}
        return out

    return diverging


def test_a_nerf_diverging_at_step_0_says_no_checkpoint_was_written(tiny_scene_dir, tmp_path, capsys, monkeypatch):
    from render3d.nerf.method import NerfMethod

    monkeypatch.setattr(NerfMethod, "losses", nan_from(0, NerfMethod.losses))
    nerf = ["--nerf.levels", "4", "--nerf.log2-table-size", "10", "--nerf.max-resolution", "32", "--nerf.hidden", "16",
            "--nerf.target-samples", "1024", "--nerf.initial-rays", "128", "--nerf.grid-resolution", "8"]
    run = tmp_path / "nerf"
    code, _, err = run_cli(capsys, "train", tiny_scene_dir, "--method", "nerf", "--steps", "5", "--out", run, "--backend", "torch",
                           "--no-progress", *nerf)
    assert code == 2
    line = assert_one_line(err, "diverged at step 0", "no checkpoint was written yet")
    assert "checkpoint.pt" not in line
    assert not (run / "checkpoint.pt").exists()


def test_a_splat_diverging_after_a_checkpoint_names_it_and_keeps_it(tiny_scene_dir, tmp_path, capsys, monkeypatch):
    from render3d.splat.method import SplatMethod
    from render3d.train import load_checkpoint

    monkeypatch.setattr(SplatMethod, "losses", nan_from(3, SplatMethod.losses))
    run = tmp_path / "splat"
    code, _, err = run_cli(capsys, "train", tiny_scene_dir, "--steps", "10", "--save-every", "2", "--out", run, *SPLAT_FLAGS)
    assert code == 2
    assert_one_line(err, "diverged at step 3", f"the last good checkpoint is {run / 'checkpoint.pt'}")
    assert load_checkpoint(run)["step"] == 2
