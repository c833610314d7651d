"""Per-browser rendering: render on change only, low resolution while the camera moves,
full resolution once it rests, each browser on its own thread.

Camera callbacks only record that something changed (they never render), so a slow
render cannot block the websocket; a browser that closes mid-render just ends its thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from render3d.protocol import SceneModel, render_preview
from render3d.viewer.camera import CameraPose
from render3d.crop import CropBox, cropped
from render3d.viewer.device_share import DeviceShare, on_fresh_thread
from render3d.viewer.frames import Frame, visualize
from render3d.viewer.source import ViewerContent

REST_SECONDS = 0.2  # the camera counts as resting after this long without an update


@dataclass(frozen=True)
class ViewSettings:
    """What every browser's picture looks like (shared by all browsers).

    Attributes:
        mode: rgb, depth, alpha or normal.
        max_side: longer image side at rest, in pixels.
        jpeg_quality: 1-100.
        background: RGB in [0, 1] behind the scene; None keeps the model's.
        depth_range: fixed near / far for the depth colours; None picks them per frame.
        crop: limit rendering to this box; None renders everything.
        moving_seconds: target time of one frame while the camera moves (sets its resolution).
        min_side: the smallest longer side used while moving.
        enabled: False when the browser renders the scene itself (viser's splat renderer).
    """

    mode: str = "rgb"
    max_side: int = 512
    jpeg_quality: int = 80
    background: Optional[tuple[float, float, float]] = None
    depth_range: Optional[tuple[float, float]] = None
    crop: Optional[CropBox] = None
    moving_seconds: float = 0.1
    min_side: int = 64
    enabled: bool = True


class FrameSink(Protocol):
    """Where one browser's frames go (a viser client, or a fake in tests)."""

    def pose(self) -> Optional[CameraPose]: ...

    def send(self, frame: Frame, jpeg_quality: int) -> None: ...


class SceneRenderer:
    """Renders a :class:`CameraPose` of the content's current model under :class:`ViewSettings`."""

    def __init__(self, content: ViewerContent, share: DeviceShare) -> None:
        self.content = content
        self.share = share
        self.seconds_per_pixel = 2e-6  # of moving frames (preview renders); refined by every one
        self.full_render_seconds = 0.0
        self._moving_timed = False  # whether a moving frame has been timed yet (until then, full ones count)
        self._crop_cache: tuple[object, Optional[CropBox], int, SceneModel] | None = None
        self.on_frame: list[Callable[[Frame, ViewSettings], None]] = []

    def _model(self, crop: Optional[CropBox]) -> SceneModel:
        model = self.content.model
        if crop is None:
            return model
        step = self.content.trainer.step if self.content.trainer is not None else 0
        cache = self._crop_cache
        if cache is None or cache[0] is not model or cache[1] != crop or cache[2] != step:
            self._crop_cache = cache = (model, crop, step, cropped(model, crop))
        return cache[3]

    def moving_side(self, settings: ViewSettings, aspect: float) -> int:
        """Longer side whose render should take about ``settings.moving_seconds``."""
        pixels = settings.moving_seconds / max(self.seconds_per_pixel, 1e-12)
        side = int(math.sqrt(pixels * max(aspect, 1.0 / max(aspect, 1e-3))))
        return max(min(side, settings.max_side), min(settings.min_side, settings.max_side))

    def render(self, pose: CameraPose, side: int, settings: ViewSettings, moving: bool = False) -> Frame:
        """One frame with the longer side ``side`` (holds the device while rendering); ``moving`` frames use
        the model's preview render where it has one (:class:`~render3d.protocol.Previewable`).

        Runs on a short-lived thread, as all the viewer's tensor work does (see
        :mod:`render3d.viewer.device_share`).
        """
        return on_fresh_thread(lambda: self._render(pose, side, settings, moving))

    def _render(self, pose: CameraPose, side: int, settings: ViewSettings, moving: bool) -> Frame:
        cameras = pose.cameras(side)
        with self.share.rendering():
            started = time.perf_counter()
            model = self._model(settings.crop)
            out = render_preview(model, cameras, settings.mode) if moving else model.render(cameras, mode=settings.mode)
            seconds = time.perf_counter() - started
        spp = seconds / (cameras.width * cameras.height)
        if moving:  # the first moving frame replaces the estimate taken from full frames
            self.seconds_per_pixel = 0.5 * (self.seconds_per_pixel + spp) if self._moving_timed else spp
            self._moving_timed = True
        elif not self._moving_timed:
            self.seconds_per_pixel = 0.5 * (self.seconds_per_pixel + spp)
        if side == settings.max_side and not moving:
            self.full_render_seconds = seconds
        bg = None if settings.background is None else torch.tensor(settings.background)
        frame = visualize(out, settings.mode, bg, self.content.model.background, settings.depth_range)
        for hook in self.on_frame:
            hook(frame, settings)
        return frame


class ClientRenderer:
    """One browser's render thread."""

    def __init__(self, sink: FrameSink, renderer: SceneRenderer, settings: Callable[[], ViewSettings]) -> None:
        self.sink = sink
        self.renderer = renderer
        self.settings = settings
        self.frames_sent = 0
        self.moving_frames = 0  # of frames_sent, those rendered while the camera moved
        self.moving_full_frames = 0  # of those, the ones at the full "Max resolution"
        self.last_side = 0
        self.last_error: Optional[BaseException] = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._last_move = 0.0
        self._moved = False
        self._needs_full = True
        self._thread = threading.Thread(target=self._loop, name="render3d-viewer-client", daemon=True)
        self._thread.start()

    # ----- called from viser callbacks (must return at once) --------------------------------
    def camera_moved(self) -> None:
        self._last_move = time.monotonic()
        self._moved = True
        self._wake.set()

    def invalidate(self) -> None:
        """Settings or the model changed: render again at full resolution."""
        self._needs_full = True
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    # ----- the render thread --------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(timeout=REST_SECONDS if (self._needs_full or self._moved) else None)
            self._wake.clear()
            if self._closed.is_set():
                return
            settings = self.settings()
            if not settings.enabled:
                continue
            moving = time.monotonic() - self._last_move < REST_SECONDS
            if self._moved and moving:
                self._moved = False
                self._needs_full = True
                self._render_and_send(settings, full=False)
            elif (self._moved or self._needs_full) and not moving:
                self._moved = False
                self._needs_full = False
                self._render_and_send(settings, full=True)

    def _render_and_send(self, settings: ViewSettings, full: bool) -> None:
        try:
            pose = self.sink.pose()
            if pose is None:
                return
            side = settings.max_side if full else self.renderer.moving_side(settings, pose.aspect)
            frame = self.renderer.render(pose, side, settings, moving=not full)
            if self._closed.is_set():
                return
            self.sink.send(frame, settings.jpeg_quality)
            self.frames_sent += 1
            self.moving_frames += 0 if full else 1
            self.moving_full_frames += int(not full and side == settings.max_side)
            self.last_side = side
        except Exception as exc:  # a closed browser, or a render error shown once in the log
            self.last_error = exc
            if not self._closed.is_set():
                print(f"viewer: render failed ({type(exc).__name__}: {exc})")

