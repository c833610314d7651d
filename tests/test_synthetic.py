"""The embedded default scene: generator layout, determinism, content and geometry."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _load_synthetic() -> ModuleType:
    """``render3d.datasets.synthetic`` when installed, else the module straight from the checkout."""
    try:
        from render3d.datasets import synthetic  # type: ignore[attr-defined]

        return synthetic
    except ImportError:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        name = "render3d_synthetic_under_test"
        spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / "synthetic.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module


synthetic = _load_synthetic()
from render3d.cameras import Cameras, intrinsics_matrix, opengl_to_opencv  # noqa: E402
from render3d.errors import Render3DError  # noqa: E402

SMALL = dict(resolution=32, n_train=4, n_val=2, n_test=3, seed=0)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate_scene(tmp_path_factory.mktemp("synth") / "scene", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rgba(root: Path, split: str, i: int) -> np.ndarray:
    return np.asarray(Image.open(root / split / f"r_{i:03d}.png"))


def _cameras_from_json(root: Path, split: str) -> Cameras:
    meta = json.loads((root / f"transforms_{split}.json").read_text())
    w = SMALL["resolution"]
    f = 0.5 * w / math.tan(0.5 * meta["camera_angle_x"])
    c2w = opengl_to_opencv(torch.tensor([fr["transform_matrix"] for fr in meta["frames"]], dtype=torch.float32))
    return Cameras(intrinsics_matrix(f, f, 0.5 * w, 0.5 * w), c2w, w, w)


def test_generation_is_deterministic(scene_dir: Path, tmp_path: Path) -> None:
    again = synthetic.generate_scene(tmp_path / "again", **SMALL)
    first, second = _files(scene_dir), _files(again)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)


def test_blender_layout(scene_dir: Path) -> None:
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
        assert 0.6 < meta["camera_angle_x"] < 0.8  # ~40-45 degrees
        assert len(meta["frames"]) == n
        for i, frame in enumerate(meta["frames"]):
            assert frame["file_path"] == f"./{split}/r_{i:03d}"
            assert (scene_dir / (frame["file_path"] + ".png")).is_file()
            assert (scene_dir / frame["depth_file_path"]).is_file()
            assert (scene_dir / frame["mask_file_path"]).is_file()
            matrix = np.array(frame["transform_matrix"])
            assert matrix.shape == (4, 4)
            np.testing.assert_allclose(matrix[3], [0, 0, 0, 1])
            np.testing.assert_allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-6)
    info = json.loads((scene_dir / "scene.json").read_text())
    assert info["generator_version"] == synthetic.GENERATOR_VERSION
    assert info["params"]["resolution"] == 32
    assert len(info["description"]["objects"]) >= 4
    np.testing.assert_allclose(info["bounds"], synthetic.scene_bounds().numpy(), atol=1e-5)


def test_images_have_content(scene_dir: Path) -> None:
    rgba = _rgba(scene_dir, "train", 0)
    assert rgba.shape == (32, 32, 4) and rgba.dtype == np.uint8
    alpha = rgba[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert ((alpha > 0) & (alpha < 255)).any()  # anti-aliased silhouettes
    opaque = rgba[alpha == 255][:, :3]
    assert len(np.unique(opaque // 32, axis=0)) >= 8  # several distinct colours
    assert (rgba[alpha == 0][:, :3] == 0).all()  # nothing behind transparent pixels
    assert np.abs(rgba.astype(int) - _rgba(scene_dir, "train", 1)).mean() > 5  # views differ
    assert np.abs(rgba.astype(int) - _rgba(scene_dir, "test", 0)).mean() > 5


def test_depth_is_set_exactly_where_mask_is(scene_dir: Path) -> None:
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for i in range(n):
            depth = np.load(scene_dir / split / f"r_{i:03d}_depth.npy")
            mask = np.asarray(Image.open(scene_dir / split / f"r_{i:03d}_mask.png"))
            assert depth.dtype == np.float32 and depth.shape == (32, 32)
            assert set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(depth > 0, mask == 255)
            alpha = _rgba(scene_dir, split, i)[..., 3]
            assert (alpha[mask == 255] > 0).all()
            assert 2.0 < depth[mask == 255].min() and depth.max() < 6.5  # cameras sit ~4 from the centre


def test_depth_unprojects_onto_object_surfaces(scene_dir: Path) -> None:
    cameras = _cameras_from_json(scene_dir, "train")
    bounds = synthetic.scene_bounds()
    ball = next(o for o in synthetic.load_description()["objects"] if o["name"] == "beach_ball")
    on_ball = 0
    for i in range(len(cameras)):
        depth = torch.from_numpy(np.load(scene_dir / "train" / f"r_{i:03d}_depth.npy"))
        origins, dirs = cameras.generate_rays(i)
        forward = cameras.c2w[i, :3, 2]
        points = origins + dirs * (depth / (dirs @ forward))[..., None]
        points = points[depth > 0]
        assert len(points) > 50
        assert (points >= bounds[0] - 1e-3).all() and (points <= bounds[1] + 1e-3).all()
        assert synthetic.scene_sdf(points).abs().max() < 2e-3
        radial = (points - torch.tensor(ball["center"])).norm(dim=-1)
        on_ball += int(((radial - ball["radius"]).abs() < 2e-3).sum())
    assert on_ball > 20


def test_cameras_on_upper_hemisphere_and_splits_differ() -> None:
    bounds = synthetic.scene_bounds()
    target = 0.5 * (bounds[0] + bounds[1])
    splits = {s: synthetic.make_cameras(n, 64, s) for s, n in (("train", 100), ("val", 10), ("test", 20))}
    for cams in splits.values():
        offsets = cams.centers - target
        radius = offsets.norm(dim=-1)
        torch.testing.assert_close(radius, torch.full_like(radius, synthetic.CAMERA_RADIUS))
        elevation = torch.rad2deg(torch.asin(offsets[:, 2] / radius))
        assert elevation.min() >= 9.9 and elevation.max() <= 70.1
        assert (cams.c2w[:, 2, 1] < 0).all()  # image "down" (+y) points down in the world (z up)
    train = splits["train"].centers
    for split in ("val", "test"):
        assert torch.cdist(splits[split].centers, train).min() > 0.05


def test_reuse_keeps_files_and_new_params_regenerate(tmp_path: Path) -> None:
    out = synthetic.generate_scene(tmp_path / "s", **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert synthetic.generate_scene(out, **SMALL) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    synthetic.generate_scene(out, **{**SMALL, "seed": 1})
    assert json.loads((out / "scene.json").read_text())["params"]["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folders left behind


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("interrupted")
        return original(*args, **kwargs)

    original = synthetic.render_view
    monkeypatch.setattr(synthetic, "render_view", failing_render)
    with pytest.raises(RuntimeError, match="interrupted"):
        synthetic.generate_scene(tmp_path / "s", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unrelated_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(Render3DError):
        synthetic.generate_scene(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_default_scene_dir_uses_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_generate(out_dir, resolution=128, **kwargs):
        seen["args"] = (Path(out_dir), resolution)
        return Path(out_dir)

    monkeypatch.setattr(synthetic, "generate_scene", fake_generate)
    monkeypatch.setenv("RENDER3D_CACHE", str(tmp_path / "cache"))
    folder = synthetic.default_scene_dir()
    assert folder == tmp_path / "cache" / f"default_scene_v{synthetic.GENERATOR_VERSION}_128"
    assert seen["args"] == (folder, 128)
    monkeypatch.delenv("RENDER3D_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert synthetic.default_scene_dir(64).parent == tmp_path / "xdg" / "render3d"


def test_scene_bounds_hold_the_scene() -> None:
    bounds = synthetic.scene_bounds()
    assert bounds.shape == (2, 3)
    assert (bounds[0] < bounds[1]).all()
    assert (bounds[0] >= -1.0).all() and (bounds[1] <= 1.0).all()
    assert len(synthetic.load_description()["objects"]) >= 4
