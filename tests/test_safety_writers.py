"""Fault tests of the safety issue: writers never leave a partial file.

Every file writer (checkpoints, JSON, PNG, PLY and .splat exports, point clouds, meshes, camera paths,
zoo sample grids, videos, PNG folders) and the commands that write files keep the old destination when
killed mid-write or just before the rename onto it, and on a full disk exit with one line.

The writer faults run in one helper process (``python tests/test_safety_writers.py writers ...``, the
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

from safety_helpers import PYTHON, assert_one_line, cli_env

HERE = Path(__file__).resolve()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


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

    from render3d.camera_paths.interpolation import Keyframe
    from render3d.camera_paths.path_file import CameraPath, save_path
    from render3d.checkpoints import save_weights
    from render3d.export.mesh import save_mesh
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
