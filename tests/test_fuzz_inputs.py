"""Property-based fuzzing of every reader with corrupted real files and corrupted exports of our own.

Each example corrupts one file (flipped bits, truncation, inserted garbage or tokens such as
``nan`` / ``-1`` / ``1e400``, or, for json, values replaced by values of another type and
deleted keys) and reads it back. The only acceptable outcomes are a valid result (finite
cameras, bounds, Gaussians) or a :class:`Render3DError` whose message is one line naming the
file's folder. Any other exception fails, and so does an example that runs longer than
``HANG_S`` (a hang).

For a longer search run e.g. ``RENDER3D_FUZZ_SCALE=20 pytest tests/test_fuzz_inputs.py``.
Real files come from ``../shared/data`` (shrunk copies of a few of their images, to stay
fast) and are skipped with a reason when it is absent; our own exports (PLY, .splat, camera
path, the synthetic scene, binary COLMAP) always run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SHARED_DATA
from render3d.errors import Render3DError

#: An example running longer than this is a hang (every input here is small).
HANG_S = 20.0


def fuzz_settings(examples: int) -> settings:
    """Bounded hypothesis settings: ``examples`` examples (times ``$RENDER3D_FUZZ_SCALE``, default 1),
    no per-example deadline (the CPU may be shared)."""
    return settings(
        max_examples=max(1, round(examples * float(os.environ.get("RENDER3D_FUZZ_SCALE", "1")))),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (it lives outside the project, in ../shared/data)")
    return path


# --------------------------------------------------------------------------- the contract


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no loader's ``except OSError`` can swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def alarm(signum, frame):
        raise Hang(f"reading took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_or_one_line_error(load: Callable[[], Any], names: str) -> Any:
    """``load()``'s result, or None after a one-line Render3DError that contains ``names``.

    Any other exception propagates (and fails the test); warnings must be one line each.
    """
    with time_limit(HANG_S), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = load()
        except Render3DError as err:
            text = str(err)
            assert "\n" not in text, text
            assert names in text, (names, text)
            result = None
    for warning in caught:
        assert "\n" not in str(warning.message).strip(), str(warning.message)
    return result


def check_scene(scene) -> None:
    """A loaded scene is usable: training frames, finite cameras, bounds and near/far."""
    assert len(scene.train) > 0
    for split in (scene.train, scene.val, scene.test):
        assert torch.isfinite(split.cameras.K).all() and torch.isfinite(split.cameras.c2w).all()
        assert len(split.images) == len(split.cameras)
    assert torch.isfinite(scene.bounds).all() and all(math.isfinite(v) for v in scene.near_far)


def check_gaussians(model) -> None:
    assert model.num_gaussians > 0
    assert all(torch.isfinite(value).all() for value in model.params.values())


# --------------------------------------------------------------------------- corruptions

SPECIAL_NUMBERS = [0, -1, 0.5, 1e-300, 1e300, 10**400, float("nan"), float("inf"), float("-inf")]
TOKENS = [b"nan", b"-nan", b"inf", b"-inf", b"0", b"-1", b"-5", b"1e400", b"99999999999999999999999", b"abc", b"", b" ", b"\n", b"\x00"]
SPECIAL_FLOATS = [struct.pack("<f", v) for v in (float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 3e38)]


@st.composite
def corrupted_bytes(draw, data: bytes, header: int = 256) -> bytes:
    """``data`` after one to three random corruptions, positions biased towards the first ``header`` bytes."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        size = len(out)
        pos = draw(st.one_of(st.integers(0, max(0, min(header, size) - 1)), st.integers(0, max(0, size - 1))))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "token", "delete", "float"]))
        if kind == "flip" and size:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "token":
            out[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 16))]
        elif kind == "float":
            out[pos : pos + 4] = draw(st.sampled_from(SPECIAL_FLOATS))
    return bytes(out)


@st.composite
def corrupted_text(draw, text: str) -> bytes:
    """A text file with random whitespace-separated tokens replaced by hostile ones (or byte corruptions)."""
    if draw(st.booleans()):
        return draw(corrupted_bytes(text.encode(), header=len(text)))
    words = text.encode().split(b" ")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(words) - 1))
        words[i] = draw(st.sampled_from(TOKENS)) + (b"\n" if words[i].endswith(b"\n") else b"")
    return b" ".join(words)


def json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, (int, float)) else type(value).__name__


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def json_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key / index path inside a parsed json document (not the document itself)."""
    items = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) else ()
    paths = []
    for key, value in items:
        paths.append(prefix + (key,))
        paths.extend(json_paths(value, prefix + (key,)))
    return paths


@st.composite
def mutated_json(draw, document: Any) -> bytes:
    """``document`` with one to three values deleted or replaced by a value of another type
    (or a hostile number), serialised; sometimes byte corruptions of the text instead."""
    if draw(st.integers(0, 4)) == 0:
        text = json.dumps(document).encode()
        return draw(corrupted_bytes(text, header=len(text)))
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        old = parent[path[-1]]
        if draw(st.integers(0, 3)) == 0:
            del parent[path[-1]]
        else:
            other = json_values.filter(lambda v: json_type(v) != json_type(old))
            parent[path[-1]] = draw(st.one_of(other, st.sampled_from(SPECIAL_NUMBERS)))
    return json.dumps(document).encode()


@contextmanager
def replaced(file: Path, data: bytes) -> Iterator[None]:
    """``file`` holds ``data`` inside the block and its original bytes after it."""
    original = file.read_bytes()
    file.write_bytes(data)
    try:
        yield
    finally:
        file.write_bytes(original)


def scene_files(root: Path) -> list[str]:
    """Every file under ``root``, as paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def shrunk_copy(src: Path, dst: Path, size: tuple[int, int]) -> None:
    """A small copy of a real photo (same aspect ratio, same format), so every example stays fast."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.draft("RGB", size)
        im.convert("RGB").resize(size).save(dst)


# --------------------------------------------------------------------------- scenes: real files


@pytest.fixture(scope="module")
def fox_scene(tmp_path_factory) -> Path:
    """fox's transforms.json cut to 6 frames (4 with shrunk copies of their images, 2 missing)."""
    real = shared("fox", "transforms.json").parent
    meta = json.loads((real / "transforms.json").read_text())
    present = [f for f in meta["frames"] if (real / f["file_path"]).is_file()][:4]
    absent = [f for f in meta["frames"] if not (real / f["file_path"]).is_file()][:2]
    root = tmp_path_factory.mktemp("fox")
    for frame in present:
        shrunk_copy(real / frame["file_path"], root / frame["file_path"], (27, 48))
    meta["frames"] = present + absent
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@given(data=st.data())
@fuzz_settings(100)
def test_fuzz_fox_scene(fox_scene: Path, data) -> None:
    """fox's transforms.json (mostly) or one of its JPEGs corrupted."""
    from render3d.datasets import load_scene

    name = data.draw(st.sampled_from(["transforms.json"] * 3 + scene_files(fox_scene / "images")), label="file")
    file = fox_scene / name if name.endswith(".json") else fox_scene / "images" / name
    if name.endswith(".json"):
        bad = data.draw(mutated_json(json.loads(file.read_text())))
    else:
        bad = data.draw(corrupted_bytes(file.read_bytes(), header=640))
    with replaced(file, bad):
        scene = load_or_one_line_error(lambda: load_scene(fox_scene, test_every=2), str(fox_scene))
    if scene is not None:
        check_scene(scene)


@pytest.fixture(scope="module")
def fern_llff(tmp_path_factory) -> Path:
    """fern's poses_bounds.npy with shrunk copies (16x12) of its 20 images_8 photos."""
    real = shared("fern", "poses_bounds.npy").parent
    root = tmp_path_factory.mktemp("fern_llff")
    shutil.copy(real / "poses_bounds.npy", root / "poses_bounds.npy")
    for image in sorted((real / "images_8").iterdir()):
        shrunk_copy(image, root / "images_8" / image.name, (16, 12))
    return root


@st.composite
def corrupted_npy(draw, file: Path) -> bytes:
    """Byte corruptions of a .npy file (header first), or hostile values written into its array."""
    if draw(st.booleans()):
        return draw(corrupted_bytes(file.read_bytes(), header=128))
    array = np.load(file)
    for _ in range(draw(st.integers(1, 3))):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([v for v in SPECIAL_NUMBERS if v != 10**400]))
    from io import BytesIO

    buffer = BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@given(data=st.data())
@fuzz_settings(75)
def test_fuzz_fern_poses_bounds(fern_llff: Path, data) -> None:
    from render3d.datasets import load_scene

    file = fern_llff / "poses_bounds.npy"
    with replaced(file, data.draw(corrupted_npy(file))):
        scene = load_or_one_line_error(lambda: load_scene(fern_llff, downscale=8), str(fern_llff))
    if scene is not None:
        check_scene(scene)


@pytest.fixture(scope="module")
def fern_colmap(tmp_path_factory) -> Path:
    """fern's COLMAP text model (points cut to the first 300) with shrunk copies of its images_8 photos."""
    real = shared("fern", "sparse", "0", "cameras.txt").parents[2]
    root = tmp_path_factory.mktemp("fern_colmap")
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    for name in ("cameras.txt", "images.txt"):
        shutil.copy(real / "sparse" / "0" / name, sparse / name)
    lines = (real / "sparse" / "0" / "points3D.txt").read_text().splitlines(keepends=True)
    (sparse / "points3D.txt").write_text("".join(lines[:303]))
    for image in sorted((real / "images_8").iterdir()):
        shrunk_copy(image, root / "images_8" / image.name, (16, 12))
    return root


@given(name=st.sampled_from(["cameras.txt", "images.txt", "points3D.txt"]), data=st.data())
@fuzz_settings(100)
def test_fuzz_fern_colmap_text(fern_colmap: Path, name: str, data) -> None:
    from render3d.datasets import load_scene

    file = fern_colmap / "sparse" / "0" / name
    with replaced(file, data.draw(corrupted_text(file.read_text()))):
        scene = load_or_one_line_error(lambda: load_scene(fern_colmap, downscale=8), str(fern_colmap))
    if scene is not None:
        check_scene(scene)


# --------------------------------------------------------------------------- scenes: our own files


@pytest.fixture(scope="module")
def synthetic_scene(tmp_path_factory) -> Path:
    """The default synthetic scene, tiny: 16 px, 4 train, 1 val, 1 test views (Blender layout)."""
    from render3d.datasets.synthetic import generate_scene

    return generate_scene(tmp_path_factory.mktemp("synthetic") / "scene", resolution=16, n_train=4, n_val=1, n_test=1)


@given(data=st.data())
@fuzz_settings(150)
def test_fuzz_synthetic_scene_files(synthetic_scene: Path, data) -> None:
    """Any one file of the scene (transforms json, image, mask, depth map) corrupted."""
    from render3d.datasets import load_scene

    name = data.draw(st.sampled_from(scene_files(synthetic_scene)), label="file")
    file = synthetic_scene / name
    if name.endswith(".json"):
        bad = data.draw(mutated_json(json.loads(file.read_text())))
    else:
        bad = data.draw(corrupted_bytes(file.read_bytes(), header=128))
    with replaced(file, bad):
        scene = load_or_one_line_error(lambda: load_scene(synthetic_scene), str(synthetic_scene))
    if scene is not None:
        check_scene(scene)


@pytest.fixture(scope="module")
def binary_colmap(tmp_path_factory) -> Path:
    """A tiny binary COLMAP model written by our own writer (2 cameras, 4 images, 20 points) with 8x6 photos."""
    from render3d.datasets.colmap_model import ColmapCamera, ColmapImage, ColmapModel, write_model_binary

    root = tmp_path_factory.mktemp("colmap_bin")
    rng = np.random.default_rng(0)
    cameras = {1: ColmapCamera(1, "SIMPLE_RADIAL", 8, 6, (7.5, 4.0, 3.0, 0.05)), 2: ColmapCamera(2, "PINHOLE", 8, 6, (7.0, 7.2, 4.1, 2.9))}
    images = {}
    for i in range(4):
        angle = 0.3 * i
        qvec = np.array([math.cos(angle / 2), 0.0, math.sin(angle / 2), 0.0])
        images[i + 1] = ColmapImage(i + 1, qvec, np.array([0.1 * i, 0.0, 4.0]), 1 + i % 2, f"img_{i}.png")
        (root / "images").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(root / "images" / f"img_{i}.png")
    points = rng.normal(size=(20, 3))
    write_model_binary(ColmapModel(cameras, images, points, rng.integers(0, 256, (20, 3), dtype=np.uint8)), root / "sparse" / "0")
    return root


@given(name=st.sampled_from(["cameras.bin", "images.bin", "points3D.bin"]), data=st.data())
@fuzz_settings(75)
def test_fuzz_binary_colmap(binary_colmap: Path, name: str, data) -> None:
    from render3d.datasets import load_scene

    file = binary_colmap / "sparse" / "0" / name
    with replaced(file, data.draw(corrupted_bytes(file.read_bytes(), header=96))):
        scene = load_or_one_line_error(lambda: load_scene(binary_colmap, test_every=0), str(binary_colmap))
    if scene is not None:
        check_scene(scene)


# --------------------------------------------------------------------------- Gaussians: PLY and .splat


def random_model(n: int, sh_degree: int, seed: int = 0):
    from torch import nn

    from render3d.splat.model import GaussianSplats
    from render3d.splat.sh import num_sh_bases

    g = torch.Generator().manual_seed(seed)
    shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3), "shN": (n, num_sh_bases(sh_degree) - 1, 3)}
    return GaussianSplats(nn.ParameterDict({k: nn.Parameter(torch.randn(s, generator=g)) for k, s in shapes.items()}), sh_degree)


@pytest.fixture(scope="module")
def inria_prefix(tmp_path_factory) -> Path:
    """The first 64 Gaussians of the reference trainer's PLY, rewritten as a valid small PLY (same header)."""
    real = shared("splat_ply", "inria_3dgs_iter7000.ply")
    data = real.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    count = int(header.split("element vertex ")[1].split()[0])
    stride = (len(data) - end) // count
    file = tmp_path_factory.mktemp("inria") / "prefix.ply"
    file.write_bytes(header.replace(f"element vertex {count}\n", "element vertex 64\n").encode("ascii") + data[end : end + 64 * stride])
    return file


@given(data=st.data())
@fuzz_settings(100)
def test_fuzz_inria_ply(inria_prefix: Path, data) -> None:
    from render3d.splat.ply import load_ply

    header = inria_prefix.read_bytes().index(b"end_header")
    with replaced(inria_prefix, data.draw(corrupted_bytes(inria_prefix.read_bytes(), header=header + 16))):
        model = load_or_one_line_error(lambda: load_ply(inria_prefix), str(inria_prefix))
    if model is not None:
        check_gaussians(model)


@given(sh_degree=st.integers(0, 3), data=st.data())
@fuzz_settings(100)
def test_fuzz_own_ply_export(tmp_path: Path, sh_degree: int, data) -> None:
    from render3d.splat.ply import load_ply, save_ply

    file = save_ply(random_model(8, sh_degree), tmp_path / f"own_{sh_degree}.ply")
    header = file.read_bytes().index(b"end_header")
    file.write_bytes(data.draw(corrupted_bytes(file.read_bytes(), header=header + 16)))
    model = load_or_one_line_error(lambda: load_ply(file), str(file))
    if model is not None:
        check_gaussians(model)


@given(data=st.data())
@fuzz_settings(50)
def test_fuzz_own_splat_export(tmp_path: Path, data) -> None:
    from render3d.splat.ply import load_splat, save_splat

    file = save_splat(random_model(8, 0), tmp_path / "own.splat")
    file.write_bytes(data.draw(corrupted_bytes(file.read_bytes(), header=64)))
    model = load_or_one_line_error(lambda: load_splat(file), str(file))
    if model is not None:
        check_gaussians(model)


# --------------------------------------------------------------------------- camera paths


def own_camera_path(tmp_path: Path) -> Path:
    from render3d.camera_paths.interpolation import Keyframe
    from render3d.camera_paths.path_file import CameraPath, save_path

    keys = [Keyframe((4.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0), 45.0, 0.0), Keyframe((0.0, 4.0, 1.0), (0.7071, 0.0, 0.7071, 0.0), 50.0, 2.0)]
    path = CameraPath(keys, fps=12, seconds=2, resolution=(64, 48), crop=((-1, -1, -1), (1, 1, 1)), background=(1, 1, 1))
    return save_path(path, tmp_path / "path.json")


@given(data=st.data())
@fuzz_settings(150)
def test_fuzz_own_camera_path(tmp_path: Path, data) -> None:
    from render3d.camera_paths.path_file import MAX_FRAMES, MAX_RESOLUTION, load_path

    file = own_camera_path(tmp_path)
    file.write_bytes(data.draw(mutated_json(json.loads(file.read_text()))))
    path = load_or_one_line_error(lambda: load_path(file), str(file))
    if path is not None:
        assert 1 <= path.num_frames <= MAX_FRAMES
        assert path.resolution is None or all(1 <= side <= MAX_RESOLUTION for side in path.resolution)
        cameras = path.cameras(*(path.resolution or (64, 48)))
        assert len(cameras) == path.num_frames
        assert torch.isfinite(cameras.K).all() and torch.isfinite(cameras.c2w).all()
