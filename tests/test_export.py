"""Renders, videos and exports: MP4, PNG frames, PLY / .splat round trips, point clouds, meshes."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from render3d.camera_paths.framing import orbit_poses, scene_frame
from render3d.camera_paths.interpolation import Keyframe
from render3d.camera_paths.path_file import CameraPath, save_path
from render3d.cli import main
from render3d.splat.method import SplatConfig
from render3d.errors import Render3DError
from render3d.splat.ply import SPLAT_DTYPE, load_ply, load_splat, save_ply, save_splat
from render3d.train import TrainConfig, Trainer, load_checkpoint
from conftest import SHARED_DATA

REFERENCE_PLY = SHARED_DATA / "splat_ply" / "inria_3dgs_iter7000.ply"


@pytest.fixture(scope="session")
def tiny_run(tiny_scene_dir, tmp_path_factory) -> Path:
    """A 100-step splat run (SH degree 1) on the 32-pixel default scene."""
    out = tmp_path_factory.mktemp("export") / "run"
    config = TrainConfig(data=str(tiny_scene_dir), steps=100, out=str(out), backend="torch", progress=False, save_every=0)
    Trainer(config, SplatConfig(init_points=1500, init_scale=0.5, sh_degree=1, refine_start=7500, refine_every=10)).run()
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    from render3d.methods import model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(tiny_run), "torch", torch.device("cpu"))


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


# --------------------------------------------------------------------------- videos and frames


def test_mp4_decodes_with_the_right_frame_count_size_and_fps(tiny_run, tmp_path):
    out = tmp_path / "orbit.mp4"
    assert run_cli("render", tiny_run, "--path", "orbit", "--seconds", "1", "--fps", "12", "--resolution", "33x31",
                   "--modes", "rgb,depth", "--out", out, "--no-progress") == 0
    reader = iio2.get_reader(out)
    meta = reader.get_meta_data()
    frames = [f for f in reader]
    reader.close()
    assert meta["codec"] == "h264" and meta["fps"] == pytest.approx(12.0)
    assert len(frames) == 12
    assert frames[0].shape == (32, 66, 3)  # two 33x31 panels side by side, padded to even
    assert frames[0][:, :33].std() > 5  # the scene, not a blank frame


def test_frames_per_mode_and_the_path_file_crop_and_background(tiny_run, tiny_model, tmp_path):
    frame = scene_frame(load_scene_cameras(tiny_run))
    keys = [Keyframe.from_c2w(pose, 40.0) for pose in orbit_poses(frame, 3)]
    far_away = ((50.0, 50.0, 50.0), (51.0, 51.0, 51.0))  # a crop box holding no Gaussians
    file = save_path(CameraPath(keys, fps=4, seconds=1, resolution=(24, 16), crop=far_away, background=(1.0, 0.0, 0.0)), tmp_path / "path.json")
    out = tmp_path / "frames"
    assert run_cli("render", tiny_run, "--path", file, "--frames", "--separate", "--modes", "rgb,alpha", "--out", out, "--no-progress") == 0
    rgb = sorted((out / "rgb").glob("*.png"))
    assert len(rgb) == 4 and len(list((out / "alpha").glob("*.png"))) == 4
    image = iio.imread(rgb[0])
    assert image.shape == (16, 24, 3)
    assert (image == [255, 0, 0]).all()  # everything cropped away: only the red background
    assert (iio.imread(sorted((out / "alpha").glob("*.png"))[0]) == 0).all()


def load_scene_cameras(run: Path):
    from render3d.train import load_data

    return load_data(TrainConfig(**load_checkpoint(run)["config"])).train.cameras


def test_render_dataset_path_writes_error_maps(tiny_run, tiny_scene, tmp_path):
    out = tmp_path / "test.mp4"
    assert run_cli("render", tiny_run, "--path", "dataset", "--split", "test", "--error-maps", "--out", out, "--no-progress") == 0
    assert len(list((tmp_path / "test_errors").glob("*.png"))) == len(tiny_scene.test)
    assert run_cli("render", tiny_run, "--path", "orbit", "--error-maps", "--out", out, "--no-progress") == 2


def test_eval_writes_error_maps(tiny_run, tiny_scene):
    assert run_cli("eval", tiny_run, "--error-maps") == 0
    maps = sorted((tiny_run / "renders" / "test_errors").glob("*.png"))
    assert len(maps) == len(tiny_scene.test)
    assert iio.imread(maps[0]).shape == (32, 32, 3)


def test_bad_path_json_fails_the_command_with_one_line(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keyframes": [{"position": [0, 0], "rotation": [1, 0, 0, 0]}]}))
    assert run_cli("render", tiny_run, "--path", bad, "--out", tmp_path / "x.mp4") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "position" in err


# --------------------------------------------------------------------------- PLY and .splat


def test_ply_round_trip_is_exact(tiny_model, tiny_scene, tmp_path):
    first = save_ply(tiny_model, tmp_path / "a.ply")
    loaded = load_ply(first)
    assert loaded.max_sh_degree == tiny_model.max_sh_degree
    for name, value in tiny_model.params.items():
        torch.testing.assert_close(loaded.params[name], value.detach(), rtol=0, atol=0, msg=name)
    cams = tiny_scene.test.cameras[0]
    torch.testing.assert_close(loaded.render(cams).rgb, tiny_model.render(cams).rgb, rtol=0, atol=0)
    assert save_ply(loaded, tmp_path / "b.ply").read_bytes() == first.read_bytes()


@pytest.mark.skipif(not REFERENCE_PLY.is_file(), reason=f"the reference 3DGS PLY is not at {REFERENCE_PLY} (../shared is absent in a fresh clone)")
def test_reference_ply_loads_renders_and_re_exports_byte_for_byte(tmp_path):
    from render3d.cameras import Cameras, intrinsics_matrix, look_at

    model = load_ply(REFERENCE_PLY)
    assert model.num_gaussians == 9080 and model.max_sh_degree == 3
    means = model.params["means"].detach()
    center = means.median(0).values
    spread = (means - center).norm(dim=-1).quantile(0.5)
    eye = center + torch.tensor([0.0, 0.0, -3.0]) * spread
    c2w = look_at(eye.double(), center.double(), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)).float()
    out = model.render(Cameras(intrinsics_matrix(40, 40, 24, 24), c2w, 48, 48))
    assert torch.isfinite(out.rgb).all() and out.alpha.max() > 0.5
    copy = save_ply(model, tmp_path / "again.ply")
    assert copy.read_bytes() == REFERENCE_PLY.read_bytes()


def test_splat_round_trip_within_its_quantization(tiny_model, tiny_scene, tmp_path):
    file = save_splat(tiny_model, tmp_path / "scene.splat")
    assert file.stat().st_size == 32 * tiny_model.num_gaussians
    back = load_splat(file)
    # the writer's order: stable, as cloned Gaussians can tie
    order = torch.argsort(-(torch.exp(tiny_model.params["scales"]).sum(-1) * torch.sigmoid(tiny_model.params["opacities"])), stable=True).detach()
    p = {k: v.detach()[order] for k, v in tiny_model.params.items()}
    q = {k: v.detach() for k, v in back.params.items()}
    torch.testing.assert_close(q["means"], p["means"], rtol=0, atol=0)
    torch.testing.assert_close(torch.exp(q["scales"]), torch.exp(p["scales"]), rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.sigmoid(q["opacities"]), torch.sigmoid(p["opacities"]), rtol=0, atol=0.5 / 255 + 1e-6)
    from render3d.splat.sh import sh_to_rgb

    torch.testing.assert_close(sh_to_rgb(q["sh0"]), sh_to_rgb(p["sh0"]).clamp(0, 1), rtol=0, atol=0.5 / 255 + 1e-6)
    quat = p["quats"] / p["quats"].norm(dim=-1, keepdim=True)
    dots = (q["quats"] * quat).sum(-1).abs()
    assert dots.min() > 0.999
    diff = (back.render(tiny_scene.test.cameras[0]).rgb - tiny_model.render(tiny_scene.test.cameras[0]).rgb).abs().mean()
    assert diff < 0.03  # only the view-dependent SH bands are lost


def test_export_ply_and_splat_commands(tiny_run, tiny_model):
    assert run_cli("export", tiny_run, "--format", "ply") == 0
    assert load_ply(tiny_run / "export" / "splats.ply").num_gaussians == tiny_model.num_gaussians
    assert run_cli("export", tiny_run, "--format", "splat") == 0
    assert (tiny_run / "export" / "splats.splat").stat().st_size == 32 * tiny_model.num_gaussians


# --------------------------------------------------------------------------- point clouds and meshes


@pytest.mark.parametrize("source", ["gaussians", "depth"])
def test_point_cloud_is_readable_and_inside_the_scene(tiny_run, tiny_scene, tmp_path, source):
    import trimesh

    out = tmp_path / f"{source}.ply"
    assert run_cli("export", tiny_run, "--format", "pointcloud", "--points", source, "--out", out) == 0
    cloud = trimesh.load(out)
    assert len(cloud.vertices) > 100
    assert np.asarray(cloud.colors).shape[1] == 4
    lo, hi = tiny_scene.bounds.numpy()
    inside = ((cloud.vertices >= lo - 0.5) & (cloud.vertices <= hi + 0.5)).all(1)
    assert inside.mean() > 0.8


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_of_the_default_scene_has_sane_bounds_and_reads_back(tiny_run, tiny_scene, tmp_path, suffix):
    import trimesh

    out = tmp_path / f"mesh{suffix}"
    assert run_cli("export", tiny_run, "--format", "mesh", "--mesh-resolution", "40", "--mesh-views", "8", "--out", out, "--no-progress") == 0
    mesh = trimesh.load(out, force="mesh")
    assert len(mesh.faces) > 200
    lo, hi = tiny_scene.bounds.numpy()
    size = hi - lo
    assert (mesh.bounds[0] >= lo - 0.1 * size).all() and (mesh.bounds[1] <= hi + 0.1 * size).all()
    assert ((mesh.bounds[1] - mesh.bounds[0]) > 0.5 * size).all()  # covers the scene, not a fragment
    assert mesh.visual.kind == "vertex"
    assert mesh.volume > 0  # faces point outwards


def test_mesh_rejects_an_unknown_suffix(tiny_run, tmp_path, capsys):
    assert run_cli("export", tiny_run, "--format", "mesh", "--out", tmp_path / "mesh.stl") == 2
    assert ".glb" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad PLY and .splat files


def random_model(n: int = 6, sh_degree: int = 1, seed: int = 0):
    """A small GaussianSplats with random parameters (no training)."""
    from torch import nn

    from render3d.splat.model import GaussianSplats
    from render3d.splat.sh import num_sh_bases

    g = torch.Generator().manual_seed(seed)
    params = nn.ParameterDict(
        {
            "means": nn.Parameter(torch.randn(n, 3, generator=g)),
            "scales": nn.Parameter(torch.randn(n, 3, generator=g) - 2),
            "quats": nn.Parameter(torch.randn(n, 4, generator=g)),
            "opacities": nn.Parameter(torch.randn(n, generator=g)),
            "sh0": nn.Parameter(torch.randn(n, 1, 3, generator=g)),
            "shN": nn.Parameter(torch.randn(n, num_sh_bases(sh_degree) - 1, 3, generator=g)),
        }
    )
    return GaussianSplats(params, sh_degree)


def ply_with(header_change=None, values=None, sh_degree: int = 0, n: int = 3) -> bytes:
    """A reference-layout PLY of ``n`` Gaussians; ``header_change(lines)`` edits its header lines, ``values`` its float32 body."""
    from render3d.splat.ply import ply_property_names

    names = ply_property_names(sh_degree)
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}", *[f"property float {p}" for p in names], "end_header"]
    if header_change is not None:
        header_change(lines)
    n_properties = sum(line.startswith("property") for line in lines)
    body = np.zeros((n, n_properties), "<f4") if values is None else np.asarray(values, "<f4")
    return ("\n".join(lines) + "\n").encode("ascii") + body.tobytes()


def _set_line(lines: list[str], index: int, text: str) -> None:
    lines[index] = text


def _insert_rest(lines: list[str], numbers) -> None:
    lines[12:12] = [f"property float f_rest_{i}" for i in numbers]


N_PROPS = 17  # SH degree 0
BAD_PLYS = {
    "vertex count not a number": (ply_with(lambda h: _set_line(h, 2, "element vertex lots")), "vertex count 'lots'"),
    "negative vertex count": (ply_with(lambda h: _set_line(h, 2, "element vertex -5")), "vertex count '-5'"),
    "vertex count beyond the file": (ply_with(lambda h: _set_line(h, 2, "element vertex 1000000000000")), "1000000000000 vertices"),
    "vertex count beyond 64 bits": (ply_with(lambda h: _set_line(h, 2, f"element vertex {10**30}")), "vertices"),
    "element without a count": (ply_with(lambda h: _set_line(h, 2, "element vertex")), "element"),
    "format without a name": (ply_with(lambda h: _set_line(h, 1, "format")), "format"),
    "property without a name": (ply_with(lambda h: _set_line(h, 3, "property float")), "property"),
    "duplicate property": (ply_with(lambda h: _set_line(h, 4, "property float x")), "property 'x' twice"),
    "f_rest with a gap": (ply_with(lambda h: _insert_rest(h, range(1, 10))), "f_rest_0"),
    "no vertices": (ply_with(n=0), "no Gaussians"),
    "all NaN": (ply_with(values=np.full((3, N_PROPS), np.nan)), "every Gaussian"),
    "ascii format": (ply_with(lambda h: _set_line(h, 1, "format ascii 1.0")), "binary_little_endian"),
    "list property": (ply_with(lambda h: _set_line(h, 3, "property list uchar int x")), "list"),
    "no end_header": (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n", "end_header"),
    "not a PLY": (b"hello", "not a PLY"),
    "empty file": (b"", "not a PLY"),
}


def assert_one_line_error(reader, file, data: bytes, fragment: str) -> None:
    """``reader(file)`` of ``data`` fails with one line naming the file and saying ``fragment``."""
    file.write_bytes(data)
    with pytest.raises(Render3DError) as err:
        reader(file)
    text = str(err.value)
    assert "\n" not in text and str(file) in text and fragment in text, text


@pytest.mark.parametrize("case", sorted(BAD_PLYS))
def test_bad_ply_is_one_line(tmp_path, case):
    assert_one_line_error(load_ply, tmp_path / "bad.ply", *BAD_PLYS[case])


def test_sh_degree_0_ply_round_trips_byte_exactly(tmp_path):
    model = random_model(sh_degree=0)
    first = save_ply(model, tmp_path / "a.ply")
    loaded = load_ply(first)
    assert loaded.max_sh_degree == 0 and loaded.params["shN"].shape == (6, 0, 3)
    for name, value in model.params.items():
        torch.testing.assert_close(loaded.params[name], value.detach(), rtol=0, atol=0, msg=name)
    assert save_ply(loaded, tmp_path / "b.ply").read_bytes() == first.read_bytes()


def test_partly_non_finite_ply_drops_those_gaussians_with_one_warning(tmp_path):
    values = np.random.default_rng(0).normal(size=(5, N_PROPS))
    values[1, 0] = np.nan  # x
    values[3, 13] = np.inf  # scale_1
    file = tmp_path / "some_nan.ply"
    file.write_bytes(ply_with(values=values, n=5))
    with pytest.warns(UserWarning, match=r"some_nan\.ply: dropped 2 of 5 Gaussians with NaN or infinite values") as record:
        model = load_ply(file)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert model.num_gaussians == 3
    torch.testing.assert_close(model.params["means"].detach(), torch.tensor(values[[0, 2, 4], :3], dtype=torch.float32))


BAD_SPLATS = {
    "size not a multiple of 32": (b"\x00" * 33, "multiple of 32"),
    "empty": (b"", "no Gaussians"),
    "all NaN": (np.full(8 * 2, np.nan, "<f4").tobytes(), "every Gaussian"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPLATS))
def test_bad_splat_is_one_line(tmp_path, case):
    assert_one_line_error(load_splat, tmp_path / "bad.splat", *BAD_SPLATS[case])


def test_partly_non_finite_splat_drops_those_gaussians_with_one_warning(tmp_path):
    file = save_splat(random_model(n=4), tmp_path / "some_nan.splat")
    records = np.frombuffer(file.read_bytes(), dtype=SPLAT_DTYPE).copy()
    records["position"][0, 1] = np.nan
    records["scale"][2, 0] = np.inf
    file.write_bytes(records.tobytes())
    with pytest.warns(UserWarning, match=r"some_nan\.splat: dropped 2 of 4 Gaussians"):
        model = load_splat(file)
    assert model.num_gaussians == 2 and all(torch.isfinite(v).all() for v in model.params.values())


@pytest.mark.parametrize("reader", [load_ply, load_splat])
def test_too_long_gaussian_file_name_is_one_line(tmp_path, reader):
    with pytest.raises(Render3DError, match="no .*file at"):
        reader(tmp_path / ("n" * 300))
