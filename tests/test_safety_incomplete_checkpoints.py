"""Fault tests of the safety issue: checkpoints with missing keys.

A 3D checkpoint lacking a top-level or ``method_state`` entry, and a zoo checkpoint lacking its model,
a weight, its training config or its sampler state, make every loading command (and the viewer's
loader) fail with one line naming the run, instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from safety_helpers import assert_one_line, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


@pytest.fixture(scope="module")
def incomplete_runs(splat_run, tmp_path_factory) -> dict[str, Path]:
    """Copies of the splat run whose checkpoint lacks one entry (top level, or inside method_state)."""
    from render3d.checkpoints import load_weights, save_weights

    good = load_weights(splat_run / "checkpoint.pt")
    runs = {}
    for key in ("method", "config", "method_config", "step", "method_state", "loss_terms", "rng", "method_state.model",
                "method_state.optimizers", "method_state.model.params"):
        ckpt = {**good, "method_state": {**good["method_state"], "model": dict(good["method_state"]["model"])}}
        *parents, last = key.split(".")
        holder = ckpt
        for name in parents:
            holder = holder[name]
        del holder[last]
        folder = tmp_path_factory.mktemp("incomplete") / key
        save_weights(ckpt, folder / "checkpoint.pt")
        runs[key] = folder
    return runs


MISSING = ("method", "config", "method_config", "step", "method_state", "method_state.model", "method_state.model.params")
LOADERS = {
    "eval": ["eval", "{run}"],
    "render": ["render", "{run}", "--no-progress", "--seconds", "0.1"],
    "export": ["export", "{run}", "--format", "ply", "--out", "{run}/x.ply"],
    "view": ["view", "{run}"],
    "train --resume": ["train", "--resume", "{run}", "--no-progress"],
}


@pytest.mark.parametrize("command", list(LOADERS))
def test_a_checkpoint_with_missing_entries_is_one_line(command, incomplete_runs, capsys, monkeypatch):
    import render3d.viewer.server as server

    monkeypatch.setattr(server, "start_viewer", lambda *a, **k: pytest.fail("the viewer started on an incomplete checkpoint"))
    keys = MISSING + (("loss_terms", "rng", "method_state.optimizers") if command == "train --resume" else ())
    for key in keys:
        run = incomplete_runs[key]
        code, _, err = run_cli(capsys, *[a.format(run=run) for a in LOADERS[command]])
        assert code == 2, (key, err)
        assert_one_line(err, str(run))


def test_a_zoo_checkpoint_with_missing_entries_is_one_line(zoo_run, tmp_path, capsys):
    from render3d.checkpoints import load_weights, save_weights

    good = load_weights(zoo_run / "model.pt")
    first_weight = next(iter(good["state"]))
    broken = {
        "model": {k: v for k, v in good.items() if k != "model"},
        "state entry": {**good, "state": {k: v for k, v in good["state"].items() if k != first_weight}},
        "train_config": {**good, "info": {k: v for k, v in good["info"].items() if k != "train_config"}},
        "sampler state": {**good, "info": {**good["info"], "trainer": {k: v for k, v in good["info"]["trainer"].items() if k != "sampler"}}},
    }
    for name, ckpt in broken.items():
        run = tmp_path / name.replace(" ", "-")
        save_weights(ckpt, run / "model.pt")
        commands = [["zoo", "train", "--resume", run, "--no-progress"]]
        if name in ("model", "state entry"):
            commands.append(["zoo", "sample", run, "-n", "2", "--out", tmp_path / "grid.png"])
        for args in commands:
            code, _, err = run_cli(capsys, *args)
            assert code == 2, (name, args, err)
            assert_one_line(err, str(run))


def test_the_viewer_loader_refuses_a_checkpoint_with_missing_entries(incomplete_runs):
    from render3d.errors import Render3DError
    from render3d.viewer.source import load_content

    for key in MISSING:
        with pytest.raises(Render3DError, match="checkpoint"):
            load_content(str(incomplete_runs[key]), "torch")
