"""Tests of the dataset loaders: tiny synthetic fixtures per format, plus the real scenes in ../shared/data."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from render3d.cameras import look_at, opencv_to_opengl, qvec_to_rotmat
from render3d.datasets import SceneData, Split, detect_format, load_scene
from render3d.datasets.colmap import camera_intrinsics, camera_to_world
from render3d.datasets.colmap_model import ColmapCamera, read_model, write_model_binary
from render3d.errors import Render3DError
from render3d.process.evaluate import umeyama
from conftest import SHARED_DATA

DATA = SHARED_DATA
W, H = 8, 6


def real_scene(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real test data {path} is absent (it lives outside the project, in ../shared/data)")
    return path


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_image(seed: int, channels: int = 3, size: tuple[int, int] = (W, H)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)


def orbit_c2w(n: int, radius: float = 4.0) -> list[np.ndarray]:
    """OpenCV camera-to-world matrices on a tilted circle, looking at the origin."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        eye = torch.tensor([radius * math.cos(a), radius * math.sin(a), 1.5], dtype=torch.float64)
        out.append(look_at(eye, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).numpy())
    return out


# --------------------------------------------------------------------------- fixtures


def make_blender(root: Path, n_train: int = 3, n_test: int = 2, val: bool = False) -> dict:
    """A tiny Blender scene: RGBA images without extension in file_path, .npy depth, PNG masks."""
    angle = 0.8
    metas = {}
    for s, (split, n) in enumerate((("train", n_train), ("test", n_test)) + ((("val", 1),) if val else ())):
        frames = []
        for i, c2w in enumerate(orbit_c2w(n)):
            rgba = random_image(10 * s + i, 4)
            rgba[0, 0, 3] = 0  # a transparent pixel
            rgba[0, 1, 3] = 255
            write_png(root / split / f"r_{i}.png", rgba)
            np.save(root / split / f"r_{i}_depth.npy", np.full((H, W), 2.5 + i, np.float32))
            mask = np.zeros((H, W), np.uint8)
            mask[:, : W // 2] = 255
            write_png(root / split / f"r_{i}_mask.png", mask)
            frames.append(
                {
                    "file_path": f"./{split}/r_{i}",
                    "depth_file_path": f"./{split}/r_{i}_depth.npy",
                    "mask_file_path": f"./{split}/r_{i}_mask.png",
                    "transform_matrix": opencv_to_opengl(torch.from_numpy(c2w)).tolist(),
                }
            )
        metas[split] = {"camera_angle_x": angle, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(metas[split]))
    return metas


def make_nerfstudio(root: Path, n: int = 10, missing: tuple[int, ...] = ()) -> dict:
    frames = []
    for i, c2w in enumerate(orbit_c2w(n)):
        if i not in missing:
            write_png(root / "images" / f"{i:04d}.jpg", random_image(i))
        frames.append({"file_path": f"images/{i:04d}.jpg", "transform_matrix": opencv_to_opengl(torch.from_numpy(c2w)).tolist()})
    meta = {"fl_x": 7.0, "fl_y": 7.5, "cx": 4.2, "cy": 2.9, "w": W, "h": H, "k1": 0.01, "k2": -0.02, "p1": 0.001, "p2": 0.0,
            "aabb_scale": 2, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return meta


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternion of a rotation matrix (for writing COLMAP fixtures)."""
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


COLMAP_CAMERAS = "# comment\n1 SIMPLE_RADIAL 8 6 7.5 4 3 0.05\n2 PINHOLE 8 6 7 7.2 4.1 2.9\n"


def make_colmap(root: Path, n: int = 10, image_names: list[str] | None = None, cameras: str = COLMAP_CAMERAS) -> list[np.ndarray]:
    """A tiny COLMAP text model (in sparse/0) with PNGs in images/; returns the OpenCV c2w by image."""
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(cameras)
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    poses = orbit_c2w(n)
    for i, c2w in enumerate(poses):
        R = c2w[:3, :3].T
        t = -R @ c2w[:3, 3]
        q = rotmat_to_qvec(R)
        name = f"img_{n - 1 - i:02d}.png"  # listed in reverse name order
        lines.append(f"{i + 1} {' '.join(map(repr, q.tolist()))} {' '.join(map(repr, t.tolist()))} {1 + i % 2} {name}")
        lines.append("" if i % 3 else "1.0 2.0 -1 3.0 4.0 5")
        write_png(root / "images" / name, random_image(100 + i))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    pts = np.random.default_rng(0).normal(size=(50, 3)) * 0.5
    (sparse / "points3D.txt").write_text(
        "# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]\n"
        + "".join(f"{i + 1} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g} {i % 256} 20 30 0.5 1 0 2 1\n" for i, p in enumerate(pts))
    )
    return poses


def make_llff(root: Path, n: int = 10, folder: str = "images_2") -> list[np.ndarray]:
    """A tiny LLFF scene: poses_bounds.npy for 8x6 photos and 4x3 images in images_2/."""
    rows = []
    poses = orbit_c2w(n)
    for i, c2w in enumerate(poses):
        R = c2w[:3, :3]
        llff = np.stack([R[:, 1], R[:, 0], -R[:, 2], c2w[:3, 3], [H, W, 7.0]], axis=1)  # (down, right, back)
        rows.append(np.concatenate([llff.ravel(), [1.0 + i * 0.01, 9.0]]))
        write_png(root / folder / f"image{i:03d}.png", random_image(200 + i, size=(W // 2, H // 2)))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return poses


# --------------------------------------------------------------------------- blender


def test_blender_loads_alpha_depth_masks(tmp_path: Path) -> None:
    make_blender(tmp_path)
    scene = load_scene(tmp_path)
    assert isinstance(scene, SceneData) and scene.format == "blender"
    train = scene.train
    assert isinstance(train, Split) and len(train) == 3 and len(scene.test) == 2
    assert train.images.shape == (3, H, W, 3) and train.images.dtype == torch.uint8
    assert train.alpha.shape == (3, H, W, 1) and train.alpha.dtype == torch.uint8
    assert train.images[0, 0, 0].tolist() == [255, 255, 255]  # transparent pixel on white
    assert train.names == ["train/r_0.png", "train/r_1.png", "train/r_2.png"]
    assert train.depths.shape == (3, H, W) and train.depths[1, 0, 0].item() == pytest.approx(3.5)
    assert train.masks.dtype == torch.bool and train.masks[0, :, : W // 2].all() and not train.masks[0, :, W // 2 :].any()
    fx = 0.5 * W / math.tan(0.4)
    np.testing.assert_allclose(train.cameras.K[0].numpy(), [[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]], rtol=1e-5, atol=1e-6)
    assert scene.val is scene.test  # no transforms_val.json
    assert torch.all(scene.bounds[0] < 0) and torch.all(scene.bounds[1] > 0)
    assert 0 < scene.near_far[0] < scene.near_far[1]


def test_blender_background_and_downscale(tmp_path: Path) -> None:
    make_blender(tmp_path, val=True)
    scene = load_scene(tmp_path, downscale=2, background=(0, 0, 0))
    assert scene.train.images.shape == (3, H // 2, W // 2, 3)
    assert scene.train.cameras.width == W // 2 and scene.train.cameras.height == H // 2
    assert scene.train.cameras.K[0, 0, 0].item() == pytest.approx(0.5 * W / math.tan(0.4) / 2, rel=1e-6)
    assert scene.train.depths.shape == (3, H // 2, W // 2)
    assert scene.background.tolist() == [0, 0, 0]
    assert len(scene.val) == 1 and scene.val is not scene.test
    full = load_scene(tmp_path, background=(0, 0, 0))
    assert full.train.images[0, 0, 0].tolist() == [0, 0, 0]


def test_blender_opengl_camera_becomes_opencv(tmp_path: Path) -> None:
    """A camera at +z looking at the origin (OpenGL: identity rotation) gets an OpenCV +z axis towards the origin."""
    write_png(tmp_path / "train" / "a.png", random_image(0))
    gl = np.eye(4)
    gl[2, 3] = 4.0
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": "train/a.png", "transform_matrix": gl.tolist()}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    c2w = load_scene(tmp_path).train.cameras.c2w[0]
    center = c2w[:3, 3]
    to_origin = -center / center.norm()
    assert torch.allclose(c2w[:3, 2], to_origin.float())  # +z forward points at the origin
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, -1.0, 0.0]))  # +y down = world -y (OpenGL up was +y)
    assert torch.allclose(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]))
    origin_cam = torch.linalg.inv(c2w) @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert origin_cam[2] == pytest.approx(4.0)


def test_blender_16bit_depth_with_scale(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", random_image(0))
    Image.fromarray(np.full((H, W), 1500, np.uint16)).save(tmp_path / "a_depth.png")
    frame = {"file_path": "a", "depth_file_path": "a_depth.png", "transform_matrix": np.eye(4).tolist()}
    meta = {"camera_angle_x": 0.7, "depth_scale": 1000.0, "frames": [frame]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    assert torch.allclose(scene.train.depths, torch.full((1, H, W), 1.5))
    assert scene.train.alpha is None and len(scene.test) == 0


# --------------------------------------------------------------------------- nerfstudio


def test_nerfstudio_shared_intrinsics_split_and_skipped_frames(tmp_path: Path) -> None:
    make_nerfstudio(tmp_path, n=12, missing=(3, 7))
    with pytest.warns(UserWarning, match=r"skipped 2 of 12 frames whose image is missing"):
        scene = load_scene(tmp_path)
    assert scene.format == "nerfstudio" and len(scene.train) + len(scene.test) == 10
    # sorted present frames 0 1 2 4 5 6 8 9 10 11 -> test = positions 0 and 8
    assert scene.test.names == ["images/0000.jpg", "images/0010.jpg"]
    assert scene.val is scene.test
    cams = scene.train.cameras
    np.testing.assert_allclose(cams.K[0].numpy(), [[7.0, 0, 4.2], [0, 7.5, 2.9], [0, 0, 1]], rtol=1e-5, atol=1e-6)
    assert cams.distortion[0].tolist() == pytest.approx([0.01, -0.02, 0.001, 0.0])
    half = 0.5 * 2 / 0.33
    np.testing.assert_allclose(scene.bounds.numpy(), [[-half] * 3, [half] * 3], rtol=1e-5)
    with pytest.warns(UserWarning, match="skipped 2 of 12"):
        assert len(load_scene(tmp_path, test_every=0).test) == 0


def test_nerfstudio_per_frame_intrinsics_and_angle_fallback(tmp_path: Path) -> None:
    meta = make_nerfstudio(tmp_path, n=3)
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        del meta[key]
    meta["camera_angle_x"] = 1.0
    meta["frames"][1]["fl_x"] = 5.0
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path, test_every=0)
    f = 0.5 * W / math.tan(0.5)
    assert scene.train.cameras.K[:, 0, 0].tolist() == pytest.approx([f, 5.0, f])
    assert scene.train.cameras.K[:, 1, 1].tolist() == pytest.approx([f, 5.0, f])
    assert scene.train.cameras.K[0, :2, 2].tolist() == pytest.approx([W / 2, H / 2])


def test_fox_real_capture_skips_missing_frames() -> None:
    root = real_scene("fox")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_scene(root, downscale=8)
    skipped = [w for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1 and "skipped 17 of 67 frames" in str(skipped[0].message)
    assert len(scene.train) + len(scene.test) == 50
    assert scene.test.names[:2] == ["images/0001.jpg", "images/0012.jpg"]
    cams = scene.train.cameras
    assert (cams.width, cams.height) == (135, 240) and scene.train.images.shape[1:] == (240, 135, 3)
    assert cams.K[0, 0, 0].item() == pytest.approx(1375.52 / 8, rel=1e-5)
    assert cams.K[0, 1, 1].item() == pytest.approx(1374.49 / 8, rel=1e-5)
    assert cams.K[0, 0, 2].item() == pytest.approx(554.558 / 8, rel=1e-5)
    assert cams.K[0, 1, 2].item() == pytest.approx(965.268 / 8, rel=1e-5)
    assert cams.distortion is not None and cams.distortion[0, 0].item() == pytest.approx(0.0578421, rel=1e-5)


# --------------------------------------------------------------------------- colmap


def test_colmap_text_model(tmp_path: Path) -> None:
    poses = make_colmap(tmp_path, n=10)
    scene = load_scene(tmp_path)
    assert scene.format == "colmap"
    # sorted by name: img_00 (image id 10, pose index 9), img_01, ...; test = 0 and 8
    assert scene.test.names == ["img_00.png", "img_08.png"]
    expected = torch.tensor(np.stack([poses[9], poses[1]]), dtype=torch.float32)
    assert torch.allclose(scene.test.cameras.c2w, expected, atol=1e-5)
    assert scene.points.shape == (50, 3) and scene.point_colors.dtype == torch.uint8
    assert scene.point_colors[3].tolist() == [3, 20, 30]
    assert not scene.forward_facing
    # img_00 has image id 10 -> camera 2 (PINHOLE); img_01 has id 9 -> camera 1 (SIMPLE_RADIAL)
    np.testing.assert_allclose(scene.test.cameras.K[0].numpy(), [[7, 0, 4.1], [0, 7.2, 2.9], [0, 0, 1]], rtol=1e-5, atol=1e-6)
    assert scene.train.cameras.distortion[0].tolist() == pytest.approx([0.05, 0, 0, 0])


def test_colmap_text_and_binary_agree(tmp_path: Path) -> None:
    text_root, bin_root = tmp_path / "text", tmp_path / "bin"
    make_colmap(text_root)
    model = read_model(text_root / "sparse" / "0")
    write_model_binary(model, bin_root / "sparse" / "0")
    shutil.copytree(text_root / "images", bin_root / "images")
    again = read_model(bin_root / "sparse" / "0")
    assert again.cameras == model.cameras
    assert [(i.id, i.name, i.camera_id) for i in again.images.values()] == [(i.id, i.name, i.camera_id) for i in model.images.values()]
    a, b = load_scene(text_root), load_scene(bin_root)
    for split in ("train", "test"):
        sa, sb = a.split(split), b.split(split)
        assert sa.names == sb.names
        assert torch.equal(sa.cameras.c2w, sb.cameras.c2w) and torch.equal(sa.cameras.K, sb.cameras.K)
        assert (sa.cameras.distortion is None) == (sb.cameras.distortion is None)
        assert sa.cameras.distortion is None or torch.equal(sa.cameras.distortion, sb.cameras.distortion)
        assert torch.equal(sa.images, sb.images)
    assert torch.equal(a.points, b.points) and torch.equal(a.point_colors, b.point_colors)


@pytest.mark.parametrize(
    "model, params, K, dist",
    [
        ("SIMPLE_PINHOLE", (10, 4, 3), (10, 10, 4, 3), None),
        ("PINHOLE", (10, 11, 4, 3), (10, 11, 4, 3), None),
        ("SIMPLE_RADIAL", (10, 4, 3, 0.1), (10, 10, 4, 3), (0.1, 0, 0, 0)),
        ("RADIAL", (10, 4, 3, 0.1, 0.2), (10, 10, 4, 3), (0.1, 0.2, 0, 0)),
        ("OPENCV", (10, 11, 4, 3, 0.1, 0.2, 0.01, 0.02), (10, 11, 4, 3), (0.1, 0.2, 0.01, 0.02)),
    ],
)
def test_colmap_camera_models(model, params, K, dist) -> None:
    k, d = camera_intrinsics(ColmapCamera(1, model, 8, 6, params), Path("cameras.txt"))
    assert (k[0, 0], k[1, 1], k[0, 2], k[1, 2]) == pytest.approx(K)
    assert (d is None) if dist is None else d.tolist() == pytest.approx(dist)


def test_colmap_unsupported_model(tmp_path: Path) -> None:
    make_colmap(tmp_path, n=2, cameras="1 OPENCV_FISHEYE 8 6 7 7 4 3 0 0 0 0\n2 PINHOLE 8 6 7 7 4 3\n")
    with pytest.raises(Render3DError, match="OPENCV_FISHEYE.*image_undistorter"):
        load_scene(tmp_path)


def test_colmap_world_to_camera_is_inverted() -> None:
    from render3d.datasets.colmap_model import ColmapImage

    q = np.array([0.9, 0.1, -0.3, 0.2])
    q /= np.linalg.norm(q)
    t = np.array([0.5, -1.0, 2.0])
    c2w = camera_to_world(ColmapImage(1, q, t, 1, "a.png"))
    w2c = np.eye(4)
    w2c[:3, :3] = qvec_to_rotmat(torch.from_numpy(q)).numpy()
    w2c[:3, 3] = t
    assert np.allclose(c2w @ w2c, np.eye(4))


def test_colmap_downscale_folders_and_sorted_matching(tmp_path: Path) -> None:
    make_colmap(tmp_path, n=9)
    resized = load_scene(tmp_path, downscale=2)  # no images_2/: images/ is resized
    assert resized.train.images.shape[1:] == (H // 2, W // 2, 3)
    # images_2/ with other names: matched by sorted order
    for i, src in enumerate(sorted((tmp_path / "images").iterdir())):
        write_png(tmp_path / "images_2" / f"image{i:03d}.png", random_image(500 + i, size=(W // 2, H // 2)))
    scene = load_scene(tmp_path, downscale=2)
    assert scene.test.names == ["image000.png", "image008.png"]
    assert torch.allclose(scene.train.cameras.K, resized.train.cameras.K)
    assert scene.train.cameras.K[0, 0, 0].item() == pytest.approx(7.0 / 2)  # img_01: PINHOLE camera
    (tmp_path / "images_2" / "image003.png").unlink()
    with pytest.raises(Render3DError, match=r"images_2 holds 8 images but .*images.txt lists 9"):
        load_scene(tmp_path, downscale=2)


def test_colmap_preferred_over_llff_unless_asked(tmp_path: Path) -> None:
    make_colmap(tmp_path, n=10)
    make_llff(tmp_path, n=10, folder="images_2")
    assert detect_format(tmp_path) == "colmap"
    assert load_scene(tmp_path, downscale=2, format="llff").format == "llff"


# --------------------------------------------------------------------------- llff


def test_llff_axis_conversion_and_split(tmp_path: Path) -> None:
    poses = make_llff(tmp_path, n=10)
    scene = load_scene(tmp_path, downscale=2)
    assert scene.format == "llff" and scene.forward_facing
    assert scene.test.names == ["image000.png", "image008.png"]
    assert torch.allclose(scene.test.cameras.c2w, torch.tensor(np.stack([poses[0], poses[8]]), dtype=torch.float32), atol=1e-6)
    np.testing.assert_allclose(scene.train.cameras.K[0].numpy(), [[3.5, 0, 2], [0, 3.5, 1.5], [0, 0, 1]], rtol=1e-5, atol=1e-6)
    assert scene.near_far == pytest.approx((1.0, 9.0))
    with pytest.warns(UserWarning, match=r"has no images/ folder; using images_2/"):  # only downscaled copies: the largest
        unasked = load_scene(tmp_path)
    assert torch.equal(unasked.train.cameras.K, scene.train.cameras.K) and torch.equal(unasked.train.images, scene.train.images)
    with pytest.raises(Render3DError, match=r"no images_4/ or images/ folder in .*pass a downscale factor it has \(2\)"):
        load_scene(tmp_path, downscale=4)


def test_fern_llff_and_colmap_agree() -> None:
    root = real_scene("fern")
    llff = load_scene(root, downscale=8, format="llff")
    colmap = load_scene(root, downscale=8, format="colmap")
    assert detect_format(root) == "colmap"
    for scene in (llff, colmap):
        assert scene.test.names == ["image000.png", "image008.png", "image016.png"]
        assert len(scene.train) == 17 and scene.train.images.shape[1:] == (378, 504, 3)
        assert scene.forward_facing
    assert llff.train.names == colmap.train.names
    a = llff.train.cameras.c2w.double().numpy()
    b = colmap.train.cameras.c2w.double().numpy()
    s, R, t = umeyama(a[:, :3, 3], b[:, :3, 3])
    mapped = s * a[:, :3, 3] @ R.T + t
    spread = np.linalg.norm(b[:, :3, 3] - b[:, :3, 3].mean(0), axis=1).max()
    assert np.linalg.norm(mapped - b[:, :3, 3], axis=1).max() < 1e-3 * spread
    assert np.abs(R @ a[:, :3, :3] - b[:, :3, :3]).max() < 1e-3
    fx_l, fx_c = llff.train.cameras.K[0, 0, 0].item(), colmap.train.cameras.K[0, 0, 0].item()
    assert abs(fx_l - fx_c) / fx_c < 0.01
    assert colmap.points.shape == (10091, 3)


# --------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(Render3DError, match="nope"):
        load_scene(tmp_path / "nope")


def test_unknown_format_lists_formats(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"")
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and all(f in msg for f in ("blender", "nerfstudio", "colmap", "llff"))
    with pytest.raises(Render3DError, match="unknown scene format 'ply'"):
        load_scene(tmp_path, format="ply")


def test_missing_image(tmp_path: Path) -> None:
    make_blender(tmp_path)
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(Render3DError, match=r"r_1.*transforms_train.json"):
        load_scene(tmp_path)


def test_corrupt_image(tmp_path: Path) -> None:
    make_blender(tmp_path)
    (tmp_path / "train" / "r_2.png").write_bytes(b"\x89PNG not really an image")
    with pytest.raises(Render3DError, match=r"r_2\.png.*corrupt"):
        load_scene(tmp_path)


def test_corrupt_image_colmap(tmp_path: Path) -> None:
    make_colmap(tmp_path, n=4)
    (tmp_path / "images" / "img_02.png").write_bytes(b"garbage")
    with pytest.raises(Render3DError, match=r"img_02\.png.*images\.txt"):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "matrix, words",
    [
        ([[float("nan")] * 4] * 3 + [[0, 0, 0, 1]], "NaN"),
        ([[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]], "degenerate"),
        ([[2, 0, 0, 1], [0, 2, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1]], "not orthonormal"),
    ],
)
def test_bad_pose_names_file_and_frame(tmp_path: Path, matrix, words) -> None:
    meta = make_blender(tmp_path)
    meta["test"]["frames"][1]["transform_matrix"] = matrix
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta["test"]))
    with pytest.raises(Render3DError, match=rf"transforms_test\.json: frame test/r_1\.png .*{words}"):
        load_scene(tmp_path)


def test_nan_pose_llff(tmp_path: Path) -> None:
    make_llff(tmp_path, n=4)
    arr = np.load(tmp_path / "poses_bounds.npy")
    arr[2, 3] = np.nan
    np.save(tmp_path / "poses_bounds.npy", arr)
    with pytest.raises(Render3DError, match=r"poses_bounds\.npy: frame image002\.png .*NaN"):
        load_scene(tmp_path, downscale=2)


def test_empty_train_split(tmp_path: Path) -> None:
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    with pytest.raises(Render3DError, match=r"no training frames in .*transforms_train\.json"):
        load_scene(tmp_path)


def test_all_nerfstudio_images_missing(tmp_path: Path) -> None:
    make_nerfstudio(tmp_path, n=3, missing=(0, 1, 2))
    with pytest.warns(UserWarning, match="skipped 3 of 3"), pytest.raises(Render3DError, match=r"transforms\.json"):
        load_scene(tmp_path)


def test_mismatched_image_sizes(tmp_path: Path) -> None:
    make_blender(tmp_path)
    write_png(tmp_path / "train" / "r_1.png", random_image(0, 4, size=(W + 2, H)))
    np.save(tmp_path / "train" / "r_1_depth.npy", np.ones((H, W + 2), np.float32))
    write_png(tmp_path / "train" / "r_1_mask.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(Render3DError, match=r"r_1\.png is 10x6 but .*r_0\.png is 8x6"):
        load_scene(tmp_path)


def test_image_aspect_must_match_camera(tmp_path: Path) -> None:
    make_nerfstudio(tmp_path, n=3)
    write_png(tmp_path / "images" / "0001.jpg", random_image(0, size=(H, W)))  # rotated photo
    with pytest.raises(Render3DError, match=r"0001\.jpg is 6x8 but its camera .* is 8x6"):
        load_scene(tmp_path, test_every=0)


def test_bad_arguments(tmp_path: Path) -> None:
    make_blender(tmp_path)
    with pytest.raises(Render3DError, match="downscale"):
        load_scene(tmp_path, downscale=0)
    with pytest.raises(Render3DError, match="background"):
        load_scene(tmp_path, background=(255, 255, 255))


# --------------------------------------------------------------------------- bad input: every field, one line


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    """The error is one line and names every fragment (the file, the field)."""
    text = str(err.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


NAN = float("nan")

# name -> (change to (top-level meta, first train frame), the field the message must name)
TRANSFORMS_CASES = {
    "w not a number": (lambda m, f: m.update(w="abc", h=H), "w"),
    "w NaN": (lambda m, f: m.update(w=NAN, h=H), "w"),
    "h zero": (lambda m, f: m.update(w=W, h=0), "h must be >= 1"),
    "camera_angle_x zero": (lambda m, f: [m.pop("fl_x", None), m.pop("fl_y", None), m.update(camera_angle_x=0)], "camera_angle_x"),
    "camera_angle_x too wide": (lambda m, f: [m.pop("fl_x", None), m.pop("fl_y", None), m.update(camera_angle_x=4.0)], "camera_angle_x"),
    "k3 not a number": (lambda m, f: m.update(k3="x"), "k3"),
    "k1 infinite": (lambda m, f: m.update(k1=float("inf")), "k1"),
    "fl_x huge integer": (lambda m, f: f.update(fl_x=10**400), "fl_x"),
    "camera_model a list": (lambda m, f: m.update(camera_model=["OPENCV"]), "camera_model"),
    "integer depth_file_path": (lambda m, f: f.update(depth_file_path=3), "depth_file_path"),
    "depth_scale zero": (lambda m, f: m.update(depth_scale=0), "depth_scale"),
    "ragged aabb": (lambda m, f: m.update(aabb=[[0, 0, 0], [1, 1]]), "aabb"),
    "inverted aabb": (lambda m, f: m.update(aabb=[[1, 1, 1], [0, 0, 0]]), "aabb"),
    "near not a number": (lambda m, f: m.update(near="a", far=5.0), "near"),
    "far below near": (lambda m, f: m.update(near=2.0, far=1.0), "far"),
    "transform_matrix huge integer": (lambda m, f: f["transform_matrix"][0].__setitem__(3, 10**400), "transform_matrix"),
    "translation beyond float32": (lambda m, f: f["transform_matrix"][0].__setitem__(3, 1e300), "out of range"),
    "focal length rounding to 0 in float32": (lambda m, f: f.update(fl_x=1e-300, fl_y=1e-300), "out of range"),
}
NERFSTUDIO_CASES = {
    "scale zero": (lambda m, f: m.update(scale=0), "scale"),
    "aabb_scale a string": (lambda m, f: m.update(aabb_scale="big"), "aabb_scale"),
    "ragged offset": (lambda m, f: m.update(offset=[0.5, 0.5]), "offset"),
}


def write_changed_transforms(root: Path, layout: str, change) -> Path:
    """A tiny scene of ``layout`` whose transforms json (top level, first frame) went through ``change``."""
    if layout == "blender":
        meta = make_blender(root)["train"]
        source = root / "transforms_train.json"
    else:
        meta = make_nerfstudio(root, n=3)
        source = root / "transforms.json"
    change(meta, meta["frames"][0])
    source.write_text(json.dumps(meta))
    return source


@pytest.mark.parametrize(
    "layout, case",
    [("blender", c) for c in TRANSFORMS_CASES] + [("nerfstudio", c) for c in [*TRANSFORMS_CASES, *NERFSTUDIO_CASES]],
)
def test_bad_transforms_field_is_one_line_naming_file_and_field(tmp_path: Path, layout: str, case: str) -> None:
    change, field = {**TRANSFORMS_CASES, **NERFSTUDIO_CASES}[case]
    source = write_changed_transforms(tmp_path, layout, change)
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path, test_every=0)
    assert_one_line(err, str(source), field)


COLMAP_BAD_CAMERAS = {
    "width zero": ("1 PINHOLE 0 6 7 7.2 4.1 2.9\n", "width"),
    "negative height": ("1 PINHOLE 8 -6 7 7.2 4.1 2.9\n", "height"),
    "NaN focal length": ("1 SIMPLE_RADIAL 8 6 nan 4 3 0.05\n", "focal"),
    "zero focal length": ("1 PINHOLE 8 6 0 7.2 4.1 2.9\n", "focal"),
    "infinite principal point": ("1 PINHOLE 8 6 7 7.2 inf 2.9\n", "principal point"),
    "NaN distortion": ("1 SIMPLE_RADIAL 8 6 7 4 3 nan\n", "distortion"),
}


@pytest.mark.parametrize("case", sorted(COLMAP_BAD_CAMERAS))
def test_bad_colmap_camera_is_one_line(tmp_path: Path, case: str) -> None:
    line, field = COLMAP_BAD_CAMERAS[case]
    make_colmap(tmp_path, n=4, cameras=line + "2 PINHOLE 8 6 7 7.2 4.1 2.9\n")
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    assert_one_line(err, "cameras.txt", "camera 1", field)


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
@pytest.mark.parametrize("keep", [0, 5, 0.5, -1])
def test_truncated_binary_colmap_is_one_line(tmp_path: Path, name: str, keep: float) -> None:
    make_colmap(tmp_path / "text", n=4)
    write_model_binary(read_model(tmp_path / "text" / "sparse" / "0"), tmp_path / "sparse" / "0")
    shutil.copytree(tmp_path / "text" / "images", tmp_path / "images")
    file = tmp_path / "sparse" / "0" / name
    data = file.read_bytes()
    file.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    assert_one_line(err, name)


@pytest.mark.parametrize(
    "name, offset, value",
    [("points3D.bin", 0, 2**62), ("images.bin", None, 2**61), ("cameras.bin", 0, 2**63)],
    ids=["point count", "2D point count", "camera count"],
)
def test_binary_colmap_huge_counts_are_one_line(tmp_path: Path, name: str, offset, value: int) -> None:
    """A corrupt count is checked against the file size before anything is allocated."""
    import struct

    make_colmap(tmp_path / "text", n=4)
    write_model_binary(read_model(tmp_path / "text" / "sparse" / "0"), tmp_path / "sparse" / "0")
    shutil.copytree(tmp_path / "text" / "images", tmp_path / "images")
    file = tmp_path / "sparse" / "0" / name
    data = bytearray(file.read_bytes())
    if offset is None:  # the first image's number of 2D points, after its fixed fields and name
        offset = data.index(b"\x00", 8 + 64) + 1
    data[offset : offset + 8] = struct.pack("<Q", value)
    file.write_bytes(bytes(data))
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    assert_one_line(err, name)


def test_non_finite_colmap_points_are_dropped_with_a_warning(tmp_path: Path) -> None:
    make_colmap(tmp_path, n=4)
    points = tmp_path / "sparse" / "0" / "points3D.txt"
    points.write_text(points.read_text() + "99 nan 0 0 1 2 3 0.5\n100 0 inf 0 1 2 3 0.5\n")
    with pytest.warns(UserWarning, match=r"points3D\.txt: dropped 2 of 52 points with NaN, infinite"):
        scene = load_scene(tmp_path)
    assert scene.points.shape == (50, 3) and torch.isfinite(scene.bounds).all()


LLFF_BAD_FILES = {
    "empty file": (lambda f: f.write_bytes(b""), "poses_bounds.npy"),
    "text file": (lambda f: f.write_text("not numpy"), "poses_bounds.npy"),
    "pickled objects": (lambda f: np.save(f, np.array([{"a": 1}] * 17, dtype=object).reshape(1, 17), allow_pickle=True), "poses_bounds.npy"),
    "wrong shape": (lambda f: np.save(f, np.zeros((4, 15))), "N x 17"),
    "no rows": (lambda f: np.save(f, np.zeros((0, 17))), "no poses"),
    "complex numbers": (lambda f: np.save(f, np.load(f).astype(np.complex128)), "not real numbers"),
    "strings": (lambda f: np.save(f, np.load(f).astype(str)), "not real numbers"),
    "infinite width": (lambda f: np.save(f, np.where(np.arange(17) == 9, np.inf, np.load(f))), "height/width/focal"),
    "focal length rounding to 0 in float32": (lambda f: np.save(f, np.where(np.arange(17) == 14, 1e-300, np.load(f))), "out of range"),
    "huge header shape": (lambda f: f.write_bytes(f.read_bytes().replace(b"(4, 17)", b"(400000000000, 17)")), "poses_bounds.npy"),
}


@pytest.mark.parametrize("case", sorted(LLFF_BAD_FILES))
def test_bad_poses_bounds_is_one_line(tmp_path: Path, case: str) -> None:
    change, fragment = LLFF_BAD_FILES[case]
    make_llff(tmp_path, n=4)
    change(tmp_path / "poses_bounds.npy")
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path, downscale=2)
    assert_one_line(err, "poses_bounds.npy", fragment)


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG (valid CRCs) whose header claims ``width`` x ``height`` pixels, with almost no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


BAD_IMAGE_FILES = {
    "empty image": ("r_1.png", b""),
    "text as image": ("r_1.png", b"hello, not a picture"),
    "decompression bomb": ("r_1.png", png_claiming_size(200_000, 200_000)),
    "header only": ("r_1.png", png_claiming_size(W, H)),
    "empty depth": ("r_1_depth.npy", b""),
    "text depth": ("r_1_depth.npy", b"\x93NUMPY garbage"),
    "empty mask": ("r_1_mask.png", b""),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGE_FILES))
def test_bad_image_depth_or_mask_file_is_one_line(tmp_path: Path, case: str) -> None:
    name, data = BAD_IMAGE_FILES[case]
    make_blender(tmp_path)
    (tmp_path / "train" / name).write_bytes(data)
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    assert_one_line(err, name)


def test_string_depth_map_is_one_line(tmp_path: Path) -> None:
    make_blender(tmp_path)
    np.save(tmp_path / "train" / "r_1_depth.npy", np.full((H, W), "deep"))
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path)
    assert_one_line(err, "r_1_depth.npy")


LONG = "n" * 300  # longer than any file name the system accepts: stat() fails with ENAMETOOLONG

TOO_LONG_NAMES = {
    "blender file_path": ("blender", lambda m, f: f.update(file_path=LONG), "image not found"),
    "nerfstudio file_path": ("nerfstudio", lambda m, f: [g.update(file_path=LONG) for g in m["frames"]], "no training frames"),
    "depth_file_path": ("blender", lambda m, f: f.update(depth_file_path=LONG), "depth map not found"),
    "mask_file_path": ("blender", lambda m, f: f.update(mask_file_path=LONG), "mask not found"),
}


@pytest.mark.parametrize("case", sorted(TOO_LONG_NAMES))
def test_too_long_file_names_are_one_line(tmp_path: Path, case: str) -> None:
    layout, change, fragment = TOO_LONG_NAMES[case]
    source = write_changed_transforms(tmp_path, layout, change)
    with pytest.raises(Render3DError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nerfstudio: "skipped 3 of 3 frames"
        load_scene(tmp_path, test_every=0)
    assert_one_line(err, fragment, str(source))


def test_too_long_scene_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Render3DError) as err:
        load_scene(tmp_path / LONG)
    assert_one_line(err, LONG)


def test_a_missing_image_whose_name_holds_a_newline_is_named_on_one_line(tmp_path: Path) -> None:
    """A model listing ``"b\\n.png"`` beside a present ``a.png``: the error names it escaped, on one line (found by fuzzing)."""
    from render3d.datasets.colmap import match_images

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(Render3DError) as err:
        match_images(["a.png", "b\n.png"], tmp_path, tmp_path / "images.bin")
    assert "\n" not in str(err.value) and "b\\n.png" in str(err.value)


def test_nerfstudio_ply_points_drop_non_finite_rows_with_one_warning(tmp_path: Path) -> None:
    """``ply_file_path`` points: coordinates and colours read back; a NaN row is dropped with one warning."""
    from render3d.datasets.nerfstudio import ply_points
    from render3d.export.pointcloud import save_point_cloud

    points = torch.tensor([[0.0, 1.0, 2.0], [float("nan"), 0.0, 0.0], [3.0, 4.0, 5.0]])
    save_point_cloud(points, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), tmp_path / "pc.ply")
    with pytest.warns(UserWarning, match="dropped 1 of 3 points"):
        xyz, rgb = ply_points({"ply_file_path": "pc.ply"}, tmp_path, tmp_path / "transforms.json")
    np.testing.assert_allclose(xyz, [[0, 1, 2], [3, 4, 5]])
    assert rgb.tolist() == [[255, 0, 0], [0, 0, 255]]
