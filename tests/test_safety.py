"""Fault tests of the safety issue: hostile checkpoints, killed and starved writers, signals and resume,
run-folder overwrites, divergence, size limits and incomplete checkpoints.

The writer faults run in one helper process (``python tests/test_safety.py writers ...``, the
``__main__`` block at the end) that forks a child per fault, so the fault can kill the child
outright: ``RLIMIT_FSIZE`` with ``SIGXFSZ`` left at its default action makes the kernel terminate
the child in the middle of a write (no Python cleanup runs, as with ``kill -9``), an audit hook
sends ``SIGKILL`` just before the rename onto the destination, and ``RLIMIT_FSIZE`` with
``SIGXFSZ`` ignored makes writes fail with ``EFBIG``, which is how a full disk looks to a writer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve()
PYTHON = sys.executable

# a small, fast splat configuration that still densifies between the interruption and the end
SPLAT_FLAGS = ["--backend", "torch", "--no-progress", "--splat.init-points", "100", "--splat.sh-degree", "1",
               "--splat.refine-start", "7500", "--splat.refine-stop", "30000", "--splat.refine-every", "10",
               "--splat.grow-grad2d", "1e-5"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from render3d.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> str:
    """``err`` is one ``error: ...`` line (no traceback) holding every needle."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def cli_env() -> dict[str, str]:
    # one thread: on a busy machine OpenMP's spinning teams make a tiny run 10x slower (same results in A and B)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process work here is tiny: one thread is faster, and much faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- runs to work on


@pytest.fixture(scope="module")
def splat_run(tmp_path_factory, tiny_scene) -> Path:
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("safety") / "splat"
    config = TrainConfig(data=str(tiny_scene.root), steps=10, out=str(out), save_every=0, progress=False, backend="torch")
    Trainer(config, SplatConfig(init_points=300, sh_degree=1), scene=tiny_scene).run()
    return out


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


def image_folder(folder: Path, count: int = 16, size: int = 8) -> Path:
    """``count`` random grey ``size`` x ``size`` PNGs: a zoo data source that loads in milliseconds."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def tiny_image_data():
    from render3d.zoo.data import ImageData

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 8, 8), generator=g, dtype=torch.uint8)
    return ImageData("noise", images[:18], images[18:], note="test noise")


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory) -> Path:
    from render3d.zoo.base import get_model_class
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    out = tmp_path_factory.mktemp("safety") / "zoo"
    data_dir = image_folder(out.parent / "images")
    config = ZooTrainConfig(data=str(data_dir), size=8, steps=2, batch_size=4, out=str(out), progress=False, save_every=0)
    ZooTrainer("ae", config, get_model_class("ae").config_type(hidden=8, latent=4)).run()
    return out


# --------------------------------------------------------------------------- 1. a malicious pickle never runs


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


# --------------------------------------------------------------------------- 2. writers never leave a partial file


@pytest.fixture(scope="module")
def writer_faults(tmp_path_factory, splat_run) -> dict:
    """Run the writer and command faults in the helper process (see the module docstring); its JSON report."""
    if not hasattr(os, "fork") or sys.platform == "win32":
        pytest.skip("the writer faults fork and use POSIX resource limits")
    work = tmp_path_factory.mktemp("writer-faults")
    started = time.perf_counter()
    result = subprocess.run([PYTHON, str(HERE), "writers", str(work), str(splat_run)], capture_output=True, text=True,
                            timeout=300, env=cli_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["seconds"] = time.perf_counter() - started
    return report


WRITERS = ("checkpoint", "json", "png", "ply", "splat", "pointcloud", "mesh", "camera_path", "zoo_grid", "video", "png_folder")
CLI_WRITES = ("export ply", "export splat", "export pointcloud", "export mesh", "render mp4", "render frames")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_writer_killed_mid_write_leaves_the_old_file(writer_faults, writer):
    case = writer_faults["writers"][writer]
    fault = case["killed_mid_write"]
    assert fault["exit"] in (-signal.SIGXFSZ, -signal.SIGKILL), fault  # really killed, not finished
    assert fault["destination"] == "old", fault
    if writer not in ("video", "png_folder"):  # the kill landed inside a temporary file, not the destination
        assert case["limit"] in fault["leftover_sizes"], fault


@pytest.mark.parametrize("writer", WRITERS)
def test_a_writer_killed_before_its_rename_leaves_the_old_file(writer_faults, writer):
    fault = writer_faults["writers"][writer]["killed_before_rename"]
    assert fault["exit"] == -signal.SIGKILL, f"the writer wrote its destination without renaming a temporary file onto it: {fault}"
    assert fault["destination"] == "old", fault


@pytest.mark.parametrize("writer", WRITERS)
def test_a_writer_on_a_full_disk_says_so_and_keeps_the_old_file(writer_faults, writer):
    case = writer_faults["writers"][writer]
    fault = case["full_disk"]
    assert fault["exit"] == 2, fault
    assert_one_line(fault["stderr"], "the disk is full")
    assert fault["destination"] == "old", fault
    assert fault["leftovers"] == [], fault
    assert case["written"] not in ("old", "absent")  # and without faults the writer does write the new content


@pytest.mark.parametrize("command", CLI_WRITES)
def test_commands_on_a_full_disk_exit_2_with_one_line(writer_faults, command):
    fault = writer_faults["commands"][command]
    assert fault["exit"] == 2, fault
    assert_one_line(fault["stderr"], "the disk is full")
    assert fault["destination"] == "old", fault
    assert fault["leftovers"] == [], fault


# --------------------------------------------------------------------------- 3. signals, then --resume, reproduce the run


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


# --------------------------------------------------------------------------- 4. runs are never silently overwritten


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
    from render3d.train import TrainConfig, claim_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda *args: "20260101-000000")  # the same second, for sure
    config = TrainConfig(data=str(tiny_scene_dir))
    first, second = claim_run_dir(config), claim_run_dir(config)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == Path("runs")


# --------------------------------------------------------------------------- 5. divergence


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


# --------------------------------------------------------------------------- 6. limits are checked before allocating


def test_sizes_beyond_the_limits_end_at_once_with_one_line(splat_run, tiny_scene_dir, tmp_path, capsys):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"fps": 1000, "seconds": 100000, "keyframes": [{"position": [0, 0, 3], "rotation": [1, 0, 0, 0]}]}))
    cases = [
        (["render", splat_run, "--resolution", "100000", "--no-progress"], "--resolution"),
        (["render", splat_run, "--path", path, "--no-progress"], "fps must be in (0, 240], got 1000"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "0"], "--mesh-resolution 0"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "100000"], "--mesh-resolution 100000"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "-5"], "--mesh-resolution -5"),
        (["train", tiny_scene_dir, "--steps", "-3", "--out", tmp_path / "never", *SPLAT_FLAGS], "--steps"),
    ]
    for args, needle in cases:
        started = time.perf_counter()
        code, _, err = run_cli(capsys, *args)
        seconds = time.perf_counter() - started
        assert code == 2, (args, err)
        assert_one_line(err, needle)
        assert seconds < 5.0, (args, seconds)
    assert not (tmp_path / "never" / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- 7. checkpoints with missing keys


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


# =========================================================================== the helper process


def _child(action, limit: int | None = None, die_on_xfsz: bool = False, kill_before_rename: Path | None = None) -> dict:
    """Run ``action()`` in a forked child under the given fault; its exit status and what it wrote to stderr.

    The child exits like the CLI: 0, or 2 with ``error: ...`` for a Render3DError, or 1 with a traceback.
    ``action`` may return an exit status (a command's).
    """
    import resource
    import traceback

    from render3d.errors import Render3DError

    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if kill_before_rename is not None:
                target = os.path.abspath(kill_before_rename)

                def hook(event, args):
                    if event == "os.rename" and target in (os.path.abspath(args[0]), os.path.abspath(args[1])):
                        os.kill(os.getpid(), signal.SIGKILL)

                sys.addaudithook(hook)
            if limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL if die_on_xfsz else signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            returned = action()
            code = returned if isinstance(returned, int) else 0
        except Render3DError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except BaseException:  # noqa: BLE001 - reported to the parent as a traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return {"exit": os.waitstatus_to_exitcode(status), "stderr": b"".join(chunks).decode("utf-8", "replace")}


def _snapshot(path: Path):
    """The destination's content: bytes of a file, {name: bytes} of a folder, None when absent."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return path.read_bytes() if path.is_file() else None


def _state(path: Path, old, new) -> str:
    now = _snapshot(path)
    if now is None:
        return "absent"
    if now == old:
        return "old"
    if now == new:
        return "new"
    return f"different ({len(now)} bytes or entries)"


def _leftovers(folder: Path, keep: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != keep]


def _clear(paths: list[Path]) -> None:
    import shutil

    for p in paths:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _wait_for_helpers(folder: Path, timeout: float = 20.0) -> None:
    """Wait until no process (an orphaned ffmpeg) names ``folder`` on its command line."""
    needle = str(folder).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    busy = busy or needle in (proc / "cmdline").read_bytes()
                except OSError:
                    pass
        if not busy:
            return
        time.sleep(0.05)


def _writers() -> dict:
    """name -> (destination name, write(destination, version)); versions 1 and 2 differ in content and size."""
    import numpy as np
    import trimesh
    from torch import nn

    from render3d.checkpoints import save_weights
    from render3d.export.mesh import save_mesh
    from render3d.export.paths import CameraPath, Keyframe, save_path
    from render3d.export.pointcloud import save_point_cloud
    from render3d.export.video import PngFolder, VideoWriter
    from render3d.files import write_json
    from render3d.images import write_png
    from render3d.splat.model import GaussianSplats
    from render3d.splat.ply import save_ply, save_splat
    from render3d.zoo.report import save_grid

    def gaussians(version: int) -> GaussianSplats:
        n = 5000 * version
        g = torch.Generator().manual_seed(version)
        params = {"means": torch.randn(n, 3, generator=g), "scales": torch.randn(n, 3, generator=g) - 3,
                  "quats": torch.randn(n, 4, generator=g), "opacities": torch.randn(n, generator=g),
                  "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 0, 3)}
        return GaussianSplats(nn.ParameterDict({k: nn.Parameter(v) for k, v in params.items()}), 0, "torch")

    def noise(version: int, shape) -> np.ndarray:
        return np.random.default_rng(version).integers(0, 256, shape, dtype=np.uint8)

    def frames(sink, version: int, count: int = 20) -> None:
        with sink:
            for i in range(count):
                sink.write(noise(100 * version + i, (64, 64, 3)))

    def camera_path(version: int) -> CameraPath:
        keys = [Keyframe((float(i), float(version), 0.0), (1.0, 0.0, 0.0, 0.0), 50.0) for i in range(1500 * version)]
        return CameraPath(keys)

    return {
        "checkpoint": ("checkpoint.pt", lambda d, v: save_weights({"step": v, "w": torch.full((40000 * v,), float(v))}, d)),
        "json": ("metrics.json", lambda d, v: write_json({"values": list(range(20000 * v))}, d)),
        "png": ("image.png", lambda d, v: write_png(d, noise(v, (128 * v, 128, 3)))),
        "ply": ("splats.ply", lambda d, v: save_ply(gaussians(v), d)),
        "splat": ("splats.splat", lambda d, v: save_splat(gaussians(v), d)),
        "pointcloud": ("pointcloud.ply", lambda d, v: save_point_cloud(torch.randn(10000 * v, 3), torch.rand(10000 * v, 3), d)),
        "mesh": ("mesh.ply", lambda d, v: save_mesh(trimesh.creation.icosphere(subdivisions=3 + v, radius=float(v)), d)),
        "camera_path": ("path.json", lambda d, v: save_path(camera_path(v), d)),
        "zoo_grid": ("samples.png", lambda d, v: save_grid(torch.rand(16 * v, 3, 16, 16, generator=torch.Generator().manual_seed(v)), d)),
        "video": ("video.mp4", lambda d, v: frames(VideoWriter(d, 10), v)),
        "png_folder": ("frames", lambda d, v: frames(PngFolder(d), v, count=4)),
    }


def _kill_midway(writer: str) -> None:
    """For the streaming sinks: SIGKILL the process half way through its frames."""
    from render3d.export.video import PngFolder, VideoWriter

    cls = VideoWriter if writer == "video" else PngFolder
    original = cls.write
    count = {"frames": 0}

    def write(self, frame):
        if count["frames"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        count["frames"] += 1
        return original(self, frame)

    cls.write = write


def _writer_faults(work: Path) -> dict:
    report = {}
    for name, (dest_name, write) in _writers().items():
        scratch = work / "_scratch" / name
        folder = work / name
        dest = folder / dest_name
        for made in (scratch, folder):
            made.mkdir(parents=True, exist_ok=True)
        write(scratch / dest_name, 2)  # the new content, written without faults (and every lazy import done)
        new = _snapshot(scratch / dest_name)
        write(dest, 1)
        old = _snapshot(dest)
        assert old != new
        size = sum(len(v) for v in new.values()) if isinstance(new, dict) else len(new)
        limit = size // 2 if name not in ("video", "png_folder") else 1024
        case = {"limit": limit}
        if name in ("video", "png_folder"):
            fault = _child(lambda: (_kill_midway(name), write(dest, 2)))
        else:
            fault = _child(lambda: write(dest, 2), limit=limit, die_on_xfsz=True)
        _wait_for_helpers(folder)
        left = _leftovers(folder, dest_name)
        case["killed_mid_write"] = {**fault, "destination": _state(dest, old, new), "leftovers": [p.name for p in left],
                                    "leftover_sizes": [p.stat().st_size for p in left if p.is_file()]}
        _clear(left)
        fault = _child(lambda: write(dest, 2), kill_before_rename=dest)
        _wait_for_helpers(folder)
        case["killed_before_rename"] = {**fault, "destination": _state(dest, old, new)}
        _clear(_leftovers(folder, dest_name))
        if case["killed_before_rename"]["destination"] != "old":  # an in-place writer replaced it: put the old one back
            _clear([dest])
            write(dest, 1)
        fault = _child(lambda: write(dest, 2), limit=limit)
        _wait_for_helpers(folder)
        case["full_disk"] = {**fault, "destination": _state(dest, old, new), "leftovers": [p.name for p in _leftovers(folder, dest_name)]}
        _clear(_leftovers(folder, dest_name))
        write(dest, 2)
        case["written"] = _state(dest, old, new)  # "different" where a format is not byte-stable (torch's zip, x264)
        report[name] = case
    return report


def _command_faults(work: Path, run: Path) -> dict:
    from render3d.cli import main

    commands = {
        "export ply": (["export", run, "--format", "ply"], "x.ply"),
        "export splat": (["export", run, "--format", "splat"], "x.splat"),
        "export pointcloud": (["export", run, "--format", "pointcloud"], "x.ply"),
        "export mesh": (["export", run, "--format", "mesh", "--mesh-resolution", "16", "--no-progress"], "m.ply"),
        "render mp4": (["render", run, "--seconds", "1", "--fps", "10", "--no-progress"], "x.mp4"),
        "render frames": (["render", run, "--frames", "--seconds", "0.5", "--fps", "10", "--no-progress"], "frames"),
    }
    report = {}
    for name, (args, dest_name) in commands.items():
        folder = work / "commands" / name.replace(" ", "-")
        dest = folder / dest_name
        if dest_name == "frames":
            (dest).mkdir(parents=True)
            (dest / "frame_00000.png").write_bytes(b"old frame")
        else:
            folder.mkdir(parents=True)
            dest.write_bytes(b"old content of " + name.encode())
        old = _snapshot(dest)
        argv = [str(a) for a in args] + ["--out", str(dest)]
        fault = _child(lambda: main(argv), limit=1024)
        _wait_for_helpers(folder)
        report[name] = {**fault, "destination": _state(dest, old, None), "leftovers": [p.name for p in _leftovers(folder, dest_name)]}
    return report


if __name__ == "__main__" and sys.argv[1:2] == ["writers"]:
    torch.set_num_threads(1)  # no thread pool in the process that forks
    work_dir, run_dir = Path(sys.argv[2]), Path(sys.argv[3])
    result = {"writers": _writer_faults(work_dir), "commands": _command_faults(work_dir, run_dir)}
    print(json.dumps(result))


def test_a_png_folder_that_cannot_take_its_place_leaves_the_older_folder_where_it_was(tmp_path, monkeypatch):
    from render3d.errors import Render3DError
    from render3d.export import video

    frame = np.zeros((4, 4, 3), np.uint8)
    with video.PngFolder(tmp_path / "frames") as sink:
        sink.write(frame)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder into place
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(video.os, "replace", replace)
    with pytest.raises(Render3DError, match="frames"):
        with video.PngFolder(tmp_path / "frames") as sink:
            sink.write(frame + 255)
            sink.write(frame + 255)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_00000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no partial or set-aside folder left


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
