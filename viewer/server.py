"""The viewer: a viser server, one render thread per browser, and the panels.

    viewer = Viewer(from_trainer(trainer))      # or Viewer(load_content("runs/x"))
    print(viewer.url)
    trainer.run()                                # the browser shows the scene as it trains
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from typing import Any, Optional

import viser

from render3d.errors import Render3DError
from render3d.training import Callback, StepEvent
from render3d.viewer.access import AccessPolicy
from render3d.viewer.camera import CameraPose, OpeningView, opening_view, opening_view_of_bounds
from render3d.viewer.controls import Controls, Rejected
from render3d.viewer.device_share import DeviceShare
from render3d.viewer.frames import Frame, available_modes
from render3d.viewer.net import choose_port
from render3d.viewer.render_loop import ClientRenderer, SceneRenderer, ViewSettings
from render3d.viewer.source import ViewerContent
from render3d.viewer.viser_guard import start_guarded_server

# While training and nobody moves the camera, the view is redrawn every MIN_REFRESH_SECONDS at
# most (the default of the training panel's "Redraw every" slider), and less often when a
# full-resolution render would take more than IDLE_SHARE of the time.
# Each redraw also costs the browser: a software-GL page (SwiftShader) spends about 0.5 CPU
# seconds on a new background image, so redrawing every 2 s took a quarter of a core.
IDLE_SHARE = 0.03
MIN_REFRESH_SECONDS = 5.0
OPENING_GRACE_SECONDS = 5.0  # how long a new page's camera reports may disagree with the opening view


class TrainingWatcher(Callback):
    """The viewer's hooks into the training loop: after each step, and after each evaluation."""

    def __init__(self, viewer: "Viewer") -> None:
        self.viewer = viewer

    def on_step_end(self, loop: Any, event: StepEvent) -> None:
        self.viewer.on_train_step(event)

    def on_eval(self, loop: Any, metrics: dict[str, Any]) -> None:
        if self.viewer.training_panel is not None and metrics.get("psnr") is not None:
            self.viewer.training_panel.last_psnr = float(metrics["psnr"])


class ViserSink:
    """Frames for one browser, through its viser client handle.

    A new page reports the camera of viser's built-in default before the opening view
    reaches it, so until it reports the ``opening`` view (or ``OPENING_GRACE_SECONDS``
    pass, e.g. when the URL sets another camera) frames are rendered from the opening view.
    """

    def __init__(self, client: viser.ClientHandle, opening: Optional[OpeningView] = None) -> None:
        self.client = client
        self._opening = opening
        self._connected = time.monotonic()

    def pose(self) -> Optional[CameraPose]:
        try:
            reported = CameraPose.from_handle(self.client.camera)
        except AssertionError:  # viser: the page has not reported a camera yet
            return None
        if self._opening is not None:
            if not self._opening.matches(reported) and time.monotonic() - self._connected < OPENING_GRACE_SECONDS:
                return self._opening.pose(reported.aspect)
            self._opening = None  # the page stands at the opening view (or chose its own): follow it from now on
        return reported

    def send(self, frame: Frame, jpeg_quality: int) -> None:
        self.client.scene.set_background_image(frame.image, format="jpeg", jpeg_quality=jpeg_quality)


class Viewer:
    """Serves ``content`` to browsers; with a trainer in it, shows training live and controls it.

    Args:
        content: what to show (see :mod:`render3d.viewer.source`).
        host, port: where to listen; a taken port is replaced by a free one (``port_changed``).
            Off loopback every browser needs the token in :attr:`url` (see :mod:`render3d.viewer.access`).
        settings: initial picture settings.
        verbose: print the URL.
    """

    def __init__(
        self,
        content: ViewerContent,
        host: str = "127.0.0.1",
        port: int = 8080,
        settings: Optional[ViewSettings] = None,
        verbose: bool = True,
    ) -> None:
        self.content = content
        self.port, self.port_changed = choose_port(host, port)
        self.host = host
        self.access = AccessPolicy.for_host(host, self.port)
        self.server = start_guarded_server(host, self.port, f"render3d: {content.name}", self.access, self._check_control)
        self.controls = Controls(self.server.gui)  # every GUI input, with the values it accepts
        self.port = self.server.get_port()
        self.share = DeviceShare(content.lock)
        self.renderer = SceneRenderer(content, self.share)
        self.modes = available_modes(content.model)
        self._settings = settings or ViewSettings()
        self._settings_lock = threading.Lock()
        self.clients: dict[int, ClientRenderer] = {}
        self._clients_lock = threading.Lock()
        self._last_refresh = 0.0
        self.training_refresh_seconds = MIN_REFRESH_SECONDS  # the training panel's "Redraw every" slider
        self._set_initial_camera()
        self._build_panels()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        if content.trainer is not None:
            content.trainer.add_callback(TrainingWatcher(self))
        if verbose:
            note = f" (port {port} was taken)" if self.port_changed else ""
            print(f"viewer: open {self.url} in a browser{note}", flush=True)
        if self.access.token_required:
            print(f"viewer: warning: listening on {host}, reachable from the network; only browsers given the URL with its token get "
                  "in", file=sys.stderr, flush=True)

    # ----- setup ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The address to open, with the token when one is needed."""
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return self.access.url(f"http://{host}:{self.port}")

    def _check_control(self, control_id: str, value: Any) -> Any:
        """A browser's ``value`` for a GUI control, as the control accepts it (raises :class:`Rejected`)."""
        controls: Optional[Controls] = getattr(self, "controls", None)  # None while the server starts
        if controls is None:
            raise Rejected("the viewer is starting")
        return controls.check(control_id, value)

    def _set_initial_camera(self) -> None:
        cams = self.content.train_cameras
        has_cameras = cams is not None and len(cams) > 0
        view = opening_view(cams, self.content.bounds) if has_cameras else opening_view_of_bounds(self.content.bounds)
        self.server.scene.set_up_direction(view.up)
        initial = self.server.initial_camera
        initial.position, initial.look_at, initial.up, initial.fov = view.position, view.look_at, view.up, view.fov
        self.opening = view

    def _build_panels(self) -> None:
        from render3d.viewer.panels import RenderPanel, TrainingPanel
        from render3d.viewer.path_editor import PathEditor
        from render3d.viewer.scene_context import SceneContext

        self.training_panel = TrainingPanel(self) if self.content.trainer is not None else None
        self.render_panel = RenderPanel(self)
        self.scene_context = SceneContext(self)
        self.path_editor = PathEditor(self)

    # ----- settings ------------------------------------------------------------------------
    @property
    def settings(self) -> ViewSettings:
        return self._settings

    def update_settings(self, **changes: Any) -> None:
        """Change the picture settings and redraw every browser at full resolution."""
        with self._settings_lock:
            self._settings = replace(self._settings, **changes)
        self.refresh()

    def refresh(self) -> None:
        """Redraw every browser (the model or the settings changed)."""
        with self._clients_lock:
            renderers = list(self.clients.values())
        for r in renderers:
            r.invalidate()

    # ----- browsers ------------------------------------------------------------------------
    def _on_connect(self, client: viser.ClientHandle) -> None:
        renderer = ClientRenderer(ViserSink(client, self.opening), self.renderer, lambda: self._settings)
        with self._clients_lock:
            self.clients[client.client_id] = renderer
        client.camera.on_update(lambda _camera: renderer.camera_moved())
        renderer.invalidate()  # the camera callback is not in place for the first camera message

    def _on_disconnect(self, client: viser.ClientHandle) -> None:
        with self._clients_lock:
            renderer = self.clients.pop(client.client_id, None)
        if renderer is not None:
            renderer.close()

    # ----- training ------------------------------------------------------------------------
    def on_train_step(self, event: StepEvent) -> None:
        """After each training step: give waiting renders their share, refresh now and then."""
        self.share.yield_to_viewer(1.0 / max(event.steps_per_second, 1e-9))
        if self.training_panel is not None:
            self.training_panel.on_event(event)
        now = time.monotonic()
        period = max(self.training_refresh_seconds, self.renderer.full_render_seconds / IDLE_SHARE)
        if now - self._last_refresh >= period or event.step >= event.total_steps:
            self._last_refresh = now
            self._follow_refined_poses()
            self.refresh()

    def _follow_refined_poses(self) -> None:
        """Move the frustums to the poses training has refined (on the training thread, between steps)."""
        trainer = self.content.trainer
        refined = trainer.method.refined_train_cameras() if trainer is not None else None
        if refined is not None:
            self.scene_context.move_frustums(refined)

    # ----- lifetime ------------------------------------------------------------------------
    def stop(self) -> None:
        """Close every browser's render thread and the server."""
        with self._clients_lock:
            renderers = list(self.clients.values())
            self.clients.clear()
        for r in renderers:
            r.close()
        self.server.stop()

    def wait(self) -> None:
        """Serve until Ctrl-C."""
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def start_viewer(content: ViewerContent, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> Viewer:
    """Start a :class:`Viewer`, turning viser start-up failures into one-line errors."""
    try:
        return Viewer(content, host, port, **kwargs)
    except OSError as exc:
        raise Render3DError(f"cannot start the viewer on {host}:{port} ({exc}): choose another --host / --port") from None
