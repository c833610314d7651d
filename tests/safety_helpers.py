"""Helpers shared by the fault tests of the safety issue (the ``tests/test_safety_*.py`` modules).

Running the CLI in process and checking its one-line errors, the environment for CLI subprocesses, a
small fast splat configuration, and the small trained runs the tests work on. The fixtures stay in the
test modules (module-scoped and, for ``one_thread``, autouse, as they were in the single module this
was split from); they call :func:`one_torch_thread`, :func:`make_splat_run` and :func:`make_zoo_run`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """The in-process work here is tiny: one thread is faster, and much faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- runs to work on


def make_splat_run(tmp_path_factory, tiny_scene) -> Path:
    """A 10-step splat run (torch backend) in a fresh temporary folder."""
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("safety") / "splat"
    config = TrainConfig(data=str(tiny_scene.root), steps=10, out=str(out), save_every=0, progress=False, backend="torch")
    Trainer(config, SplatConfig(init_points=300, sh_degree=1), scene=tiny_scene).run()
    return out


def image_folder(folder: Path, count: int = 16, size: int = 8) -> Path:
    """``count`` random grey ``size`` x ``size`` PNGs: a zoo data source that loads in milliseconds."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def make_zoo_run(tmp_path_factory) -> Path:
    """A 2-step ``ae`` zoo run on an :func:`image_folder` (next to the run, in ``images``)."""
    from render3d.zoo.base import get_model_class
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    out = tmp_path_factory.mktemp("safety") / "zoo"
    data_dir = image_folder(out.parent / "images")
    config = ZooTrainConfig(data=str(data_dir), size=8, steps=2, batch_size=4, out=str(out), progress=False, save_every=0)
    ZooTrainer("ae", config, get_model_class("ae").config_type(hidden=8, latent=4)).run()
    return out
