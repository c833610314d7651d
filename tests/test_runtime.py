"""Process start-up settings (render3d/runtime.py): OpenMP wait policy, numba threads, glibc malloc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "RENDER3D_PROCESS_SETUP",
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")
PROBE = """
    import json, os, sys
    {before}
    from render3d.runtime import configure_process
    applied = configure_process()
    print(json.dumps({{"applied": applied, "policy": os.environ.get("OMP_WAIT_POLICY"),
                      "numba_threads": os.environ.get("NUMBA_NUM_THREADS")}}))
"""


def probe(env: dict[str, str], before: str = "") -> dict:
    """``configure_process()`` in a fresh interpreter with exactly ``env`` for the settings above."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    code = textwrap.dedent(PROBE.format(before=before))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_process_setup_sets_passive_openmp_and_malloc_before_torch_loads():
    result = probe({})
    assert result["policy"] == "PASSIVE" and result["applied"]["openmp_passive"]
    assert result["applied"]["malloc"] == (sys.platform.startswith("linux"))  # glibc on Linux here
    assert result["numba_threads"] is None  # numba keeps its default (the core count) unless OMP_NUM_THREADS is set


def test_process_setup_leaves_the_users_choices_alone():
    assert probe({"OMP_WAIT_POLICY": "ACTIVE"})["policy"] == "ACTIVE"
    assert not probe({"MALLOC_MMAP_THRESHOLD_": "65536"})["applied"]["malloc"]
    threads = probe({"OMP_NUM_THREADS": "1"})
    assert threads["numba_threads"] == "1" and threads["applied"]["numba_threads"]
    assert probe({"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"})["numba_threads"] == "2"
    off = probe({"RENDER3D_PROCESS_SETUP": "0"})
    assert off["policy"] is None and not any(off["applied"].values())


def test_too_late_once_torch_is_loaded():
    """libgomp reads the policy when it loads: after ``import torch`` the setting would be a lie, so it is not made."""
    result = probe({}, before="import torch")
    assert result["policy"] is None and not result["applied"]["openmp_passive"]


def test_the_command_applies_it(tmp_path):
    """The ``render3d`` command (``cli.main``) makes the settings first, whatever the subcommand."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    code = "import os, sys; sys.argv = ['render3d', 'info', sys.argv[1]]; " \
           "from render3d.cli import main; main(); print('policy', os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing")], cwd=ROOT, env=clean, capture_output=True,
                         text=True, timeout=120)
    assert "policy PASSIVE" in out.stdout, out.stdout + out.stderr
