"""What the benches share: the machine description, an older checkout to compare against,
interleaved rounds with medians, and the lines a report starts with.

Nothing here imports torch when the module loads: some benches set the process up first
(``render3d.runtime``), and the OpenMP wait policy only takes effect before torch loads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# exported with a revision; render3d.{viewer,datasets,assets} live at the top level (pyproject maps them)
CHECKOUT_PATHS = ("render3d", "viewer", "datasets", "assets", "pyproject.toml")
MAPPED_PACKAGES = ("viewer", "datasets", "assets")
T = TypeVar("T")


# ----------------------------------------------------------------------------- the machine


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def matmul_probe() -> Callable[..., float]:
    """The zoo's 2048x2048 float32 matmul GFLOP/s probe (``render3d.zoo.perf.matmul_gflops``) of this
    checkout. Cached: a bench that then puts an older checkout on the path keeps measuring with this one."""
    from render3d.zoo.perf import matmul_gflops

    return matmul_gflops


def matmul_gflops() -> float:
    """GFLOP/s of a plain 2048x2048 float32 matmul now: the machine's speed at this moment."""
    return matmul_probe()()


def describe(matmul: bool = True) -> str:
    """One line: processor, cores, torch threads, load average and (``matmul``) the matmul GFLOP/s now."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"load average {load:.1f} (shared machine)")
    return text + (f", 2048^2 float32 matmul {matmul_gflops():.1f} GFLOP/s" if matmul else "")


# ----------------------------------------------------------------------------- an older checkout


@contextlib.contextmanager
def baseline_checkout(where: Optional[str]) -> Iterator[Optional[Path]]:
    """The older checkout that ``--baseline-tree`` names, or None without one.

    ``where`` is a folder holding a checkout (``git archive COMMIT | tar -x -C DIR``), used as
    it is, or a git revision of this repository, exported to a temporary folder for the
    duration. Either way ``render3d/{viewer,datasets,assets}`` are linked to the top-level
    folders, as the installed package maps them, so ``PYTHONPATH=TREE`` imports that code.
    """
    if not where:
        yield None
        return
    if Path(where).is_dir():
        tree = Path(where).resolve()
        link_mapped_packages(tree)
        yield tree
        return
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", where], capture_output=True, text=True)
    if listed.returncode != 0:
        raise SystemExit(f"--baseline-tree {where}: neither a folder nor a git revision of {ROOT}")
    paths = [p for p in CHECKOUT_PATHS if p in listed.stdout.split()]
    with tempfile.TemporaryDirectory(prefix="render3d-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", where, *paths], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        link_mapped_packages(Path(tmp))
        yield Path(tmp)


def link_mapped_packages(tree: Path) -> None:
    """``TREE/render3d/NAME`` -> ``TREE/NAME`` for the top-level packages the install maps into render3d."""
    for name in MAPPED_PACKAGES:
        target, link = tree / name, tree / "render3d" / name
        if target.is_dir() and (tree / "render3d").is_dir() and not link.exists():
            link.symlink_to(target, target_is_directory=True)


def baseline_label(where: str) -> str:
    """How a table names the ``--baseline-tree`` rows: the revision, or the folder's name."""
    return Path(where).name if Path(where).is_dir() else where


def python_code_in(tree: Optional[Path], code: str) -> str:
    """``code`` to run with ``python -c`` (from a folder outside this checkout), importing render3d
    from ``tree`` (this checkout when None) and the bench modules from bench/.

    The bench helpers, and this checkout's matmul probe, are imported first; then the older
    render3d takes the place of this checkout's on the path (the editable install's finder,
    which would find this checkout's, is dropped).
    """
    lines = ["import sys", f"sys.path.insert(0, {str(BENCH)!r})", "import common", "common.matmul_probe()"]
    if tree is not None:
        lines += ["for name in [m for m in sys.modules if m == 'render3d' or m.startswith('render3d.')]:",
                  "    del sys.modules[name]",
                  "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]",
                  f"sys.path.insert(0, {str(tree)!r})"]
    return "\n".join(lines) + "\n" + code


# ----------------------------------------------------------------------------- rounds and medians


def interleaved(runs: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Every run once per round, in turn, so that the machine's load hits them alike."""
    results: dict[str, list[T]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return results


def medians(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median of the samples' numbers (the first sample's value where it is not a number)."""
    return {key: statistics.median(s[key] for s in samples) if isinstance(value, (int, float)) and not isinstance(value, bool)
            else value for key, value in samples[0].items()}


# ----------------------------------------------------------------------------- reports


def command_line() -> str:
    """The command that is running, as a reader would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def header(*notes: str, matmul: bool = True) -> str:
    """A report's opening lines: the command and date, the machine, then ``notes``."""
    return "\n\n".join([f"`{command_line()}`, {time.strftime('%Y-%m-%d')}", f"Machine: {describe(matmul)}", *notes])


def table_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_header(columns: Sequence[str]) -> str:
    """A markdown table's header line and rule."""
    return table_row(columns) + "\n|" + "|".join(["---"] * len(columns)) + "|"
