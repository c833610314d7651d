"""The viewer in a real browser (Debian's chromium driven by Playwright) while training runs.

Screenshots and timings go to ``test-artifacts/viewer/``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="the Playwright package is not installed (pip install playwright)")
if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)

from render3d.viewer.render_loop import ViewSettings  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "viewer"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage",
]
# Share of canvas pixels in strong colour: the scene's objects are saturated, viser's own
# background, grid and frustum lines are not.
COLORED_PIXELS_JS = """() => {
  const c = document.querySelector('canvas[data-engine]');
  const t = document.createElement('canvas'); t.width = c.width; t.height = c.height;
  const g = t.getContext('2d'); g.drawImage(c, 0, 0);
  const d = g.getImageData(0, 0, t.width, t.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
    if (hi - lo > 60) n++;
  }
  return n / (d.length / 4);
}"""


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Live:
    """A trainer running in a thread, its viewer, and a browser."""

    def __init__(self, trainer, viewer, browser) -> None:
        self.trainer, self.viewer, self.browser = trainer, viewer, browser
        self.numbers: dict[str, float] = {}

    def open_page(self):
        before = set(self.viewer.clients)
        page = self.browser.new_page()
        started = time.monotonic()
        page.goto(self.viewer.url)
        wait_for(lambda: set(self.viewer.clients) - before, what="the page to connect")
        (client_id,) = set(self.viewer.clients) - before
        return page, client_id, started

    def renderer(self, client_id):
        return self.viewer.clients[client_id]

    def camera(self, client_id):
        return self.viewer.server.get_clients()[client_id].camera

    def shot(self, page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def drag(page, dx: int = 120, dy: int = 10) -> None:
    page.mouse.move(300, 350)
    page.mouse.down()
    page.mouse.move(300 + dx, 350 + dy, steps=12)
    page.mouse.up()


@pytest.fixture(scope="module")
def live(tiny_scene_dir, tiny_scene, tmp_path_factory):
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer
    from render3d.training import TrainingInterrupted
    from render3d.viewer.server import Viewer
    from render3d.viewer.source import from_trainer

    out = tmp_path_factory.mktemp("browser") / "run"
    config = TrainConfig(data=str(tiny_scene_dir), steps=60, out=str(out), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=1500, refine_start=7500, refine_every=10, sh_degree=1), scene=tiny_scene)
    trainer.run()  # a recognisable scene and a checkpoint on disk
    trainer.config.steps = 100_000  # then keep training while the browser watches
    viewer = Viewer(from_trainer(trainer), port=0, settings=ViewSettings(max_side=160), verbose=False)

    def train_until_stopped() -> None:
        try:
            trainer.run()
        except TrainingInterrupted:
            pass

    training = threading.Thread(target=train_until_stopped, daemon=True)
    training.start()
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=shutil.which("chromium"), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1024, "height": 700},
        )
        state = Live(trainer, viewer, browser)
        try:
            yield state
        finally:
            trainer.request_stop()
            trainer.resume_training()
            training.join(30)
            browser.close()
            viewer.stop()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "timings.json").write_text(json.dumps(state.numbers, indent=2) + "\n")


@pytest.fixture(scope="module")
def first_page(live):
    page, client_id, started = live.open_page()
    wait_for(lambda: page.evaluate(COLORED_PIXELS_JS) > 0.01, what="the first server image on the canvas")
    live.numbers["page_load_to_first_image_s"] = round(time.monotonic() - started, 2)
    return page, client_id


def test_the_page_loads_and_shows_the_first_server_image(live, first_page):
    page, client_id = first_page
    assert live.renderer(client_id).frames_sent >= 1
    assert page.evaluate(COLORED_PIXELS_JS) > 0.01
    live.shot(page, "01_first_image")


def test_a_drag_moves_the_server_camera_and_brings_new_frames(live, first_page):
    page, client_id = first_page
    renderer = live.renderer(client_id)
    wait_for(lambda: renderer.last_side == 160, what="a full-resolution frame")
    before, frames = live.camera(client_id).position.copy(), renderer.frames_sent
    started = time.monotonic()
    drag(page, dx=150)
    wait_for(lambda: renderer.frames_sent > frames, what="a frame after the drag")
    assert abs(live.camera(client_id).position - before).max() > 1e-3
    wait_for(lambda: renderer.last_side == 160 and renderer.frames_sent > frames + 1, what="the full-resolution frame at rest")
    live.numbers["frames_during_drag_and_rest"] = renderer.frames_sent - frames
    live.numbers["drag_to_rest_frame_s"] = round(time.monotonic() - started, 2)
    live.shot(page, "02_after_drag")


def test_render_mode_and_pause_controls_reach_the_viewer_and_trainer(live, first_page):
    page, client_id = first_page
    renderer = live.renderer(client_id)
    frames = renderer.frames_sent
    page.get_by_role("combobox", name="Mode").click()
    page.get_by_role("option", name="depth").click()
    wait_for(lambda: live.viewer.settings.mode == "depth", what="the depth mode")
    wait_for(lambda: renderer.frames_sent > frames, what="a depth frame")
    page.get_by_text("(blue)", exact=False).first.wait_for(timeout=10000)  # the legend with its range
    time.sleep(0.5)
    live.shot(page, "03_depth_mode")

    page.get_by_role("button", name="Pause").click()
    wait_for(lambda: live.trainer.paused, what="training to pause")
    time.sleep(0.3)
    step = live.trainer.step
    time.sleep(0.5)
    assert live.trainer.step == step
    page.get_by_text("paused", exact=False).first.wait_for(timeout=5000)
    live.shot(page, "04_paused")
    page.get_by_role("button", name="Resume").click()
    wait_for(lambda: live.trainer.step > step, what="training to resume")

    page.get_by_role("combobox", name="Mode").click()
    page.get_by_role("option", name="rgb").click()
    wait_for(lambda: live.viewer.settings.mode == "rgb", what="the rgb mode")


def test_the_path_editor_saves_json_that_the_renderer_accepts(live, first_page, tmp_path):
    from render3d.cli import main
    from render3d.camera_paths.path_file import load_path

    page, _ = first_page
    page.get_by_text("Camera path").click()
    page.get_by_role("button", name="Add keyframe").click()
    wait_for(lambda: len(live.viewer.path_editor.keyframes) == 1, what="keyframe 1")
    drag(page, dx=-200, dy=30)
    time.sleep(0.5)
    page.get_by_role("button", name="Add keyframe").click()
    wait_for(lambda: len(live.viewer.path_editor.keyframes) == 2, what="keyframe 2")
    file = live.viewer.path_editor.path_file()  # RUN/paths/camera_path.json
    page.get_by_role("button", name="Save path").click()
    wait_for(file.exists, what=f"{file}")
    page.get_by_text("saved 2 keyframes to paths/camera_path.json").wait_for(timeout=5000)  # escaped markdown shows plain
    live.shot(page, "05_camera_path")
    path = load_path(file)
    assert len(path.keyframes) == 2
    video = tmp_path / "path.mp4"
    argv = ["render", str(live.trainer.run_dir), "--path", str(file), "--resolution", "32x24", "--fps", "4", "--seconds", "0.5",
            "--no-progress", "--out", str(video)]
    assert main(argv) == 0
    assert video.stat().st_size > 0


def test_a_typed_file_name_shows_as_text_not_html(live, first_page):
    page, _ = first_page
    editor = live.viewer.path_editor
    if not page.get_by_role("button", name="Save path").is_visible():
        page.get_by_text("Camera path").click()
    typed = "<img src=x onerror=alert(1)>"
    editor.file.value = typed  # as if typed (tests/test_viewer_security.py types it through a websocket)
    page.get_by_role("button", name="Save path").click()
    status = page.get_by_text("is not a plain file name", exact=False).first
    status.wait_for(timeout=10000)
    assert typed in status.inner_text() and page.locator('img[src="x"]').count() == 0
    live.shot(page, "06_typed_html")
    editor.file.value = "camera_path"


def test_two_pages_each_get_their_own_view(live, first_page):
    page1, id1 = first_page
    page2, id2, _ = live.open_page()
    try:
        r1, r2 = live.renderer(id1), live.renderer(id2)
        wait_for(lambda: r2.frames_sent >= 1, what="page 2's first frame")
        wait_for(lambda: r2.last_side == 160, what="page 2 at rest")
        pos1, pos2, moving1 = live.camera(id1).position.copy(), live.camera(id2).position.copy(), r1.moving_frames
        drag(page2, dx=-180)
        wait_for(lambda: abs(live.camera(id2).position - pos2).max() > 1e-3, what="page 2's camera to move")
        wait_for(lambda: r2.moving_frames > 0 and r2.last_side == 160, what="page 2's frame at rest")
        assert abs(live.camera(id1).position - pos1).max() < 1e-6  # page 1 kept its own view
        assert r1.moving_frames == moving1  # page 1 got live-training refreshes only, no motion frames
        wait_for(lambda: page2.evaluate(COLORED_PIXELS_JS) > 0.01, what="page 2's image")
        live.shot(page2, "07_second_page")
    finally:
        page2.close()


def test_a_page_closed_mid_render_harms_nothing(live):
    live.trainer.pause()
    live.viewer.update_settings(max_side=1024)  # a slow render (seconds on a CPU)
    try:
        page, client_id, _ = live.open_page()
        renderer = live.renderer(client_id)
        wait_for(lambda: live.viewer.share.pending > 0, what="a render in progress")
        page.close()
        wait_for(lambda: not renderer.alive, timeout=60, what="the closed page's render thread to end")
        assert client_id not in live.viewer.clients
    finally:
        live.viewer.update_settings(max_side=160)
        live.trainer.resume_training()
    step = live.trainer.step
    wait_for(lambda: live.trainer.step > step, what="training to go on")
    page, client_id, started = live.open_page()
    wait_for(lambda: page.evaluate(COLORED_PIXELS_JS) > 0.01, what="a new page's first image")
    live.shot(page, "08_after_close")
    page.close()


def test_off_loopback_the_page_loads_through_the_tokened_url_only(live):
    """``--host 0.0.0.0``: the printed URL (with its token) works; without the token nothing is served."""
    from render3d.viewer.server import Viewer
    from render3d.viewer.source import from_trainer

    content = from_trainer(live.trainer)
    content.trainer, content.static_model = None, live.trainer.method.model  # renders still take the trainer's lock
    exposed = Viewer(content, host="0.0.0.0", port=0, settings=ViewSettings(max_side=160), verbose=False)
    page = live.browser.new_page()
    try:
        assert page.goto(exposed.url.split("?")[0]).status == 403
        assert not exposed.clients
        page.goto(exposed.url)
        wait_for(lambda: exposed.clients, what="the page opened with the token to connect")
        wait_for(lambda: page.evaluate(COLORED_PIXELS_JS) > 0.01, what="its first image")
        live.shot(page, "09_token_url")
    finally:
        page.close()
        exposed.stop()
