"""The viewer without a browser: camera conventions, frames, crop, device sharing, the
per-browser render loop, ports, the path editor's files and video, and the CLI."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for
import torch
from torch.nn import functional as nn_functional

from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.errors import Render3DError
from render3d.protocol import RenderOutput
from render3d.viewer.camera import CameraPose, frustum_scale, opening_view, pose_of
from render3d.crop import CropBox, DepthCroppedModel, cropped
from render3d.viewer.device_share import DeviceShare
from render3d.viewer.frames import available_modes, visualize
from render3d.viewer.net import choose_port
from render3d.viewer.render_loop import REST_SECONDS, ClientRenderer, SceneRenderer, ViewSettings
from render3d.viewer.source import from_trainer
from conftest import SHARED_DATA

SPLAT_PLY = SHARED_DATA / "splat_ply" / "inria_3dgs_iter7000.ply"


@pytest.fixture(scope="module")
def trained(tiny_scene, tiny_scene_dir, tmp_path_factory):
    """A splat trainer after 60 steps on the tiny scene (its run folder holds a checkpoint)."""
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("viewer") / "run"
    config = TrainConfig(data=str(tiny_scene_dir), steps=60, out=str(out), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=1500, refine_start=7500, refine_every=10, sh_degree=1), scene=tiny_scene)
    trainer.run()
    return trainer


def test_a_training_camera_seen_through_the_viewer_renders_like_the_dataset_camera(trained):
    cams = trained.scene.test.cameras
    pose = pose_of(cams, 0)
    again = pose.cameras(cams.width)
    torch.testing.assert_close(again.c2w[0], cams.c2w[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(again.K[0], cams.K[0], atol=1e-3, rtol=0)
    model = trained.method.model
    torch.testing.assert_close(model.render(again).rgb, model.render(cams[0]).rgb, atol=1e-4, rtol=0)


def test_pose_sizes_follow_the_canvas_aspect():
    pose = CameraPose((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.8, 2.0)
    assert pose.size_for(256) == (256, 128)
    assert CameraPose(pose.wxyz, pose.position, 0.8, 0.5).size_for(256) == (128, 256)


def _rig(positions: torch.Tensor, target: torch.Tensor) -> Cameras:
    """Cameras at ``positions [N, 3]`` looking at ``target``, z up, 64x48 px."""
    c2w = torch.stack([look_at(p, target, torch.tensor([0.0, 0.0, 1.0])) for p in positions])
    return Cameras(intrinsics_matrix(60.0, 60.0, 32.0, 24.0)[None].expand(len(c2w), 3, 3), c2w, 64, 48)


def _ring(n: int = 40, radius: float = 4.0, heights: tuple[float, float] = (1.0, 2.5)) -> Cameras:
    """NeRF-synthetic-like: cameras on a ring (alternating between two heights) around the origin, looking at it."""
    angles = torch.arange(n) * (2 * torch.pi / n)
    heights = torch.where(torch.arange(n) % 2 == 0, heights[0], heights[1])
    flat = (radius**2 - heights**2).sqrt()
    return _rig(torch.stack([flat * torch.cos(angles), flat * torch.sin(angles), heights], -1), torch.zeros(3))


def _sight_clearance(view, positions: torch.Tensor) -> float:
    """Degrees between the line of sight and the direction to the camera nearest to it."""
    eye, target = torch.tensor(view.position, dtype=torch.float64), torch.tensor(view.look_at, dtype=torch.float64)
    to_cams = nn_functional.normalize(positions.double() - eye, dim=-1)
    sight = nn_functional.normalize(target - eye, dim=0)
    return float(torch.rad2deg(torch.arccos((to_cams @ sight).clamp(-1, 1))).min())


def test_opening_view_stands_outside_a_ring_of_cameras_with_none_in_the_middle():
    cams = _ring()
    view = opening_view(cams, torch.tensor([[-0.75] * 3, [0.75] * 3]))  # a 1.5-unit object
    positions = cams.c2w[:, :3, 3].double()
    distance = float(torch.tensor(view.position).norm())
    assert distance >= 1.4 * float(positions.norm(dim=-1).max())
    torch.testing.assert_close(torch.tensor(view.look_at, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert _sight_clearance(view, positions) > 4.0
    assert view.up[2] > 0.99 and view.fov == pytest.approx(float(cams.fov_y()[0]))
    assert frustum_scale(cams) < 0.15 * 1.5  # far smaller than the object


def test_frustums_are_sized_from_the_camera_spacing():
    dense = _ring(200, heights=(1.0, 1.0))
    positions = dense.c2w[:, :3, 3].double()
    spacing = float((positions[0] - positions[1]).norm())
    assert frustum_scale(dense) == pytest.approx(0.2 * spacing, rel=0.05)
    assert frustum_scale(_ring(8)) == pytest.approx(0.04 * 4.0, rel=0.05)  # a few cameras far apart: 4% of their distance


def test_opening_view_of_a_forward_facing_rig_stands_behind_it():
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 4), torch.linspace(-0.5, 0.5, 3), indexing="ij"), -1).reshape(-1, 2)
    positions = torch.cat([grid, torch.zeros(len(grid), 1)], -1)
    cams = _rig(positions, torch.tensor([0.0, 0.0, 30.0]))
    view = opening_view(cams, torch.tensor([[-10.0, -8.0, 15.0], [10.0, 8.0, 60.0]]))
    assert view.position[2] < -1.0 and abs(view.position[0]) < 1e-6 and view.look_at[2] > 15.0


def test_opening_view_from_inside_the_content_is_the_first_camera_stepped_forward():
    """A room captured from within: outside the cameras would be behind the walls."""
    cams = _ring(radius=2.0, heights=(0.5, 1.0))
    view = opening_view(cams, torch.tensor([[-6.0] * 3, [6.0] * 3]))
    first, forward = cams.c2w[0, :3, 3].double(), cams.c2w[0, :3, 2].double()
    step = torch.tensor(view.position, dtype=torch.float64) - first
    assert float(step.norm()) == pytest.approx(3 * frustum_scale(cams), rel=1e-4)
    torch.testing.assert_close(step / step.norm(), forward, atol=1e-6, rtol=0)


def test_a_page_is_shown_the_opening_view_until_it_reports_it():
    """viser's page first reports its own default camera; those frames would show the wrong view."""
    from types import SimpleNamespace

    from render3d.viewer.server import ViserSink

    view = opening_view(_ring(), torch.tensor([[-0.75] * 3, [0.75] * 3]))
    camera = SimpleNamespace(wxyz=(1.0, 0.0, 0.0, 0.0), position=(5.0, 0.0, 0.0), fov=1.3, aspect=1.5)
    sink = ViserSink(SimpleNamespace(camera=camera), view)
    shown = sink.pose()
    assert shown.position == pytest.approx(view.position) and shown.aspect == 1.5 and shown.fov == pytest.approx(view.fov)
    at_opening = view.pose(1.5)
    camera.wxyz, camera.position, camera.fov = at_opening.wxyz, at_opening.position, view.fov
    assert sink.pose().position == pytest.approx(view.position)
    camera.position = (0.0, 7.0, 1.0)  # from then on the page's own camera
    assert sink.pose().position == (0.0, 7.0, 1.0)


def _output(depth_values: torch.Tensor, alpha_values: torch.Tensor) -> RenderOutput:
    h, w = depth_values.shape
    return RenderOutput(rgb=torch.full((1, h, w, 3), 0.25), depth=depth_values[None, ..., None], alpha=alpha_values[None, ..., None])


def test_frames_for_every_mode():
    depth = torch.linspace(1, 3, 64).reshape(8, 8)
    alpha = torch.ones(8, 8)
    alpha[0] = 0.0
    out = _output(depth * alpha, alpha)
    out.rgb[0, 0] = 1.0  # composited on the model's white
    rgb = visualize(out, "rgb", background=torch.tensor([0.0, 0.0, 1.0]), model_bg=torch.ones(3))
    assert rgb.image.dtype == np.uint8 and rgb.image.shape == (8, 8, 3)
    # the transparent row (composited on white) now shows the chosen blue background
    assert tuple(rgb.image[0, 0]) == (0, 0, 255) and tuple(rgb.image[4, 4]) == (64, 64, 64)
    d = visualize(out, "depth")
    lo, hi = d.depth_range
    assert 1.0 < lo < 1.3 and 2.7 < hi < 3.0
    assert not np.array_equal(d.image[1, 0], d.image[7, 7])  # near and far get different colours
    assert visualize(out, "depth", fixed_range=(0.0, 10.0)).depth_range == (0.0, 10.0)
    a = visualize(out, "alpha")
    assert a.image[0].max() == 0 and a.image[4].min() == 255
    with pytest.raises(ValueError, match="no normals"):
        visualize(out, "normal")


def test_available_modes_follow_the_models_capabilities(trained):
    assert available_modes(trained.method.model) == ("rgb", "depth", "alpha", "normal")  # splats render normals

    class PlainModel:  # the bare SceneModel protocol: no normals
        background = torch.ones(3)

        def render(self, cameras, mode="rgb"):
            return trained.method.model.render(cameras, "rgb")

    assert available_modes(PlainModel()) == ("rgb", "depth", "alpha")
    out = trained.method.model.render(trained.scene.test.cameras[0], mode="normal")
    frame = visualize(out, "normal")
    assert frame.image.shape == (32, 32, 3) and frame.image.std() > 10


def test_crop_keeps_only_what_is_inside(trained):
    model = trained.method.model
    cam = trained.scene.test.cameras[0]
    box = CropBox((-0.2, -0.2, -1.0), (0.2, 0.2, 0.3))
    small = cropped(model, box)
    assert 0 < small.num_gaussians < model.num_gaussians
    assert box.contains(small.params["means"]).all()
    assert cropped(model, None) is model
    # the protocol-only crop (for models without cropped()) clears pixels outside the box
    generic = DepthCroppedModel(model, box)
    full, part = model.render(cam), generic.render(cam)
    assert part.alpha.sum() < 0.8 * full.alpha.sum()
    everything = DepthCroppedModel(model, CropBox((-1e3,) * 3, (1e3,) * 3)).render(cam)
    torch.testing.assert_close(everything.alpha, full.alpha * (full.depth > 0))


def test_training_waits_for_pending_renders_only_up_to_its_share():
    share = DeviceShare(balance=0.5)
    assert share.yield_to_viewer(0.1) == 0.0  # nobody waiting: no cost
    entered, release = threading.Event(), threading.Event()

    def render():
        with share.rendering():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=render)
    t.start()
    entered.wait(5)
    waited = share.yield_to_viewer(0.1)  # balance 0.5: at most as long as the step
    assert 0.08 < waited < 0.5
    threading.Timer(0.05, release.set).start()
    share.balance = 0.95
    assert share.yield_to_viewer(0.1) < 1.0  # returns as soon as the render is done
    t.join(5)
    assert share.pending == 0


class FakeSink:
    """A browser stand-in: a fixed pose, frames recorded, optionally slow or failing."""

    def __init__(self, pose: CameraPose, delay: float = 0.0, fail: bool = False) -> None:
        self._pose, self.delay, self.fail = pose, delay, fail
        self.frames: list[np.ndarray] = []

    def pose(self):
        return self._pose

    def send(self, frame, jpeg_quality):
        if self.fail:
            raise ConnectionError("browser gone")
        time.sleep(self.delay)
        self.frames.append(frame.image)


def test_render_loop_low_resolution_while_moving_full_at_rest(trained):
    content = from_trainer(trained)
    renderer = SceneRenderer(content, DeviceShare(content.lock))
    settings = ViewSettings(max_side=96, min_side=16, moving_seconds=1e-6)
    sink = FakeSink(pose_of(trained.scene.test.cameras, 0))
    client = ClientRenderer(sink, renderer, lambda: settings)
    try:
        client.invalidate()
        assert wait_for(lambda: len(sink.frames) == 1)
        assert max(sink.frames[0].shape[:2]) == 96
        time.sleep(2 * REST_SECONDS)
        assert len(sink.frames) == 1  # nothing changed: nothing rendered
        for _ in range(5):
            client.camera_moved()
            time.sleep(0.03)
        assert wait_for(lambda: any(max(f.shape[:2]) == 16 for f in sink.frames[1:]))
        assert wait_for(lambda: max(sink.frames[-1].shape[:2]) == 96)  # once the camera rests
    finally:
        client.close()
        client.join(5)
    assert not client.alive


def test_viewer_tensor_work_runs_on_threads_that_end(trained):
    """A long-lived thread that ran a parallel op keeps an OpenMP team that slows training (see device_share)."""
    content = from_trainer(trained)
    seen: list[threading.Thread] = []

    class Recording:
        background = None

        def render(self, cameras, mode="rgb"):
            seen.append(threading.current_thread())
            return trained.method.model.render(cameras, mode)

    content.trainer = None
    content.static_model = Recording()
    renderer = SceneRenderer(content, DeviceShare(content.lock))
    frame = renderer.render(pose_of(trained.scene.test.cameras, 0), 32, ViewSettings(max_side=32))
    assert frame.image.shape[:2] == (32, 32)
    assert seen and seen[0] is not threading.current_thread() and not seen[0].is_alive()
    with pytest.raises(ZeroDivisionError):  # errors reach the caller
        DeviceShare().run(lambda: 1 / 0)


def test_a_browser_that_goes_away_ends_its_thread_quietly(trained):
    content = from_trainer(trained)
    renderer = SceneRenderer(content, DeviceShare(content.lock))
    pose = pose_of(trained.scene.test.cameras, 0)
    failing = ClientRenderer(FakeSink(pose, fail=True), renderer, lambda: ViewSettings(max_side=32))
    failing.invalidate()
    assert wait_for(lambda: failing.last_error is not None)
    assert failing.alive  # a failed send does not kill the thread
    failing.close()
    failing.join(5)
    assert not failing.alive
    slow = FakeSink(pose)
    closing = ClientRenderer(slow, renderer, lambda: ViewSettings(max_side=32))
    with content.lock:  # the render waits for the "training step" ...
        closing.invalidate()
        time.sleep(REST_SECONDS + 0.1)
        closing.close()  # ... and the browser closes meanwhile
    closing.join(5)
    assert not closing.alive and slow.frames == []


def test_a_taken_port_is_replaced_and_a_bad_host_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port, changed = choose_port("127.0.0.1", taken)
    assert changed and port != taken
    assert choose_port("127.0.0.1", 0)[1] is False
    with pytest.raises(Render3DError, match="not a known host"):
        choose_port("no-such-host.invalid", 8080)
    with pytest.raises(Render3DError, match="cannot listen"):
        choose_port("192.0.2.1", 8080)  # TEST-NET: not an address of this machine
    with pytest.raises(Render3DError, match="not a TCP port"):
        choose_port("127.0.0.1", 70000)


def test_viewer_path_editor_saves_a_path_the_renderer_reads_and_renders_a_video(trained, tmp_path):
    from render3d.camera_paths.path_file import load_path
    from render3d.viewer.server import Viewer

    content = from_trainer(trained)
    content.run_dir = tmp_path
    viewer = Viewer(content, port=0, settings=ViewSettings(max_side=32), verbose=False)
    try:
        editor = viewer.path_editor
        cams = trained.scene.test.cameras
        for i in range(3):
            editor.add_keyframe(None, pose_of(cams, i))
        assert editor.selected.options == ("1", "2", "3")
        editor.remove_keyframe()  # removes the selected (last) keyframe
        assert len(editor.keyframes) == 2
        editor.fov.value = 40.0
        editor.seconds.value, editor.fps.value = 0.5, 8
        editor.width.value, editor.height.value = 32, 24
        viewer.scene_context.crop_on.value = True
        assert viewer.settings.crop is not None
        file = editor.save_file()
        data = json.loads(file.read_text())
        assert data["keyframes"][1]["fov"] == 40.0 and data["crop"] is not None
        path = load_path(file)
        assert len(path.keyframes) == 2 and path.resolution == (32, 24)
        editor.start_video()
        editor.video_thread.join(60)
        assert editor.last_video is not None and editor.last_video.stat().st_size > 0, editor.status.content
        import imageio.v3 as iio

        assert iio.imread(editor.last_video).shape[0] == 4  # 0.5 s at 8 fps
    finally:
        viewer.stop()


def test_the_viewer_follows_training_and_adds_no_cost_without_browsers(tiny_scene, tmp_path):
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer
    from render3d.viewer.server import Viewer

    config = TrainConfig(steps=20, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=500, sh_degree=0), scene=tiny_scene)
    viewer = Viewer(from_trainer(trainer), port=0, verbose=False)
    try:
        trainer.run()
        assert "step 20 / 20" in viewer.training_panel.stats.content
        assert viewer.share.render_seconds == 0.0
        viewer.training_panel.toggle_pause()
        assert trainer.paused and viewer.training_panel.pause_button.label == "Resume"
        viewer.training_panel.toggle_pause()
        assert not trainer.paused
        assert viewer.training_refresh_seconds == viewer.training_panel.redraw.value == 5.0
        viewer.training_panel.redraw.value = 20.0  # as the browser's slider does
        assert viewer.training_refresh_seconds == 20.0
    finally:
        viewer.stop()


def test_view_loads_a_run_folder_and_a_reference_ply(trained):
    from render3d.viewer.source import load_content

    trained.save_checkpoint()
    content = load_content(str(trained.run_dir), "torch")
    assert content.train_cameras is not None and len(content.train_cameras) == len(trained.scene.train)
    assert content.static_model.num_gaussians == trained.method.model.num_gaussians
    with pytest.raises(Render3DError, match="does not exist"):
        load_content(str(trained.run_dir / "missing"))
    if not SPLAT_PLY.exists():
        pytest.skip(f"{SPLAT_PLY} is not here (a fresh clone has no ../shared)")
    ply = load_content(str(SPLAT_PLY), "torch")
    assert ply.static_model.num_gaussians == 9080 and ply.train_cameras is None
    lo, hi = ply.bounds
    assert (hi > lo).all()


def test_cli_view_and_train_viewer_errors_are_one_line(capsys, tmp_path, tiny_scene_dir):
    from render3d.cli import main

    assert main(["view", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err
    assert main(["train", str(tiny_scene_dir), "--steps", "1", "--out", str(tmp_path / "r"), "--viewer", "--host", "no-such-host.invalid",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a known host" in err and "\n" not in err


def test_the_package_pins_the_viser_release_the_guard_was_written_for():
    """pyproject.toml installs exactly the viser that viewer/viser_guard.py checks (a fresh install gets a working viewer)."""
    import tomllib

    import viser

    from render3d.viewer.viser_guard import VISER_VERSION

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert f"viser=={VISER_VERSION}" in project["dependencies"]
    assert viser.__version__ == VISER_VERSION


def test_the_frustums_follow_the_poses_training_refines(tiny_scene, tmp_path):
    """With --splat.pose-opt the live viewer moves each training camera's frustum to its refined pose."""
    import numpy as np

    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer
    from render3d.viewer.camera import pose_of
    from render3d.viewer.server import Viewer

    config = TrainConfig(steps=20, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=500, sh_degree=0, pose_opt=True, lr_pose=1e-2), scene=tiny_scene)
    viewer = Viewer(from_trainer(trainer), port=0, verbose=False)
    try:
        trainer.run()  # the last step refreshes the viewer
        refined, given = trainer.method.refined_train_cameras(), tiny_scene.train.cameras
        context = viewer.scene_context
        moved = 0
        for handle, i in zip(context.frustums, context._frustum_indices):
            np.testing.assert_allclose(handle.position, pose_of(refined, i).position, atol=1e-6)
            moved += not np.allclose(handle.position, pose_of(given, i).position, atol=1e-6)
        assert moved > 0
    finally:
        viewer.stop()
