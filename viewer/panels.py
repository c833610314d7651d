"""The side panels: training controls and statistics, and the picture settings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from render3d.viewer.frames import Frame, colorbar
from render3d.viewer.render_loop import ViewSettings

if TYPE_CHECKING:
    from render3d.viewer.server import Viewer

STATS_PERIOD = 0.25  # seconds between panel updates while training
MAX_DEPTH = 1e6  # the largest fixed depth range a browser may set (world units)


class TrainingPanel:
    """Pause / resume, step, loss, test PSNR, model statistics, steps/s, train-vs-view balance.

    These controls change training, so they are for authorised browsers only: every browser
    that reaches them passed the handshake check (:mod:`render3d.viewer.access`), which off
    loopback means it holds the token; a refused browser never gets a connection.
    """

    def __init__(self, viewer: "Viewer") -> None:
        self.viewer = viewer
        self.trainer = viewer.content.trainer
        gui, controls = viewer.server.gui, viewer.controls
        self._last_update = 0.0
        self._rate_mark: Optional[tuple[float, int]] = None
        self.steps_per_second = 0.0
        self.last_psnr: Optional[float] = None
        with gui.add_folder("Training"):
            self.stats = gui.add_markdown(self._stats_text(None))
            self.pause_button = controls.button("Pause", icon=None, hint="pause or resume training")
            self.balance = controls.slider(
                "Train ↔ view", 0.0, 1.0, 0.05, float(viewer.share.balance),
                hint="share of the device the viewer may take while the camera moves (0: training first, 1: viewing first)",
            )
            self.redraw = controls.slider(
                "Redraw every (s)", 1.0, 60.0, 1.0, float(viewer.training_refresh_seconds),
                hint="while training and nobody moves the camera; each redraw costs the browser some CPU too",
            )
        self.redraw.on_update(lambda _event: setattr(viewer, "training_refresh_seconds", float(self.redraw.value)))
        self.pause_button.on_click(lambda _event: self.toggle_pause())
        self.balance.on_update(lambda _event: setattr(viewer.share, "balance", float(self.balance.value)))

    def toggle_pause(self) -> None:
        """Pause a running trainer or resume a paused one."""
        if self.trainer.paused:
            self.trainer.resume_training()
        else:
            self.trainer.pause()
        self.pause_button.label = "Resume" if self.trainer.paused else "Pause"
        self.stats.content = self._stats_text(None)
        self.viewer.refresh()

    def _stats_text(self, event: Any) -> str:
        t = self.trainer
        step = event.step if event is not None else t.step
        total = event.total_steps if event is not None else t.config.steps
        loss = f"{event.loss:.4f}" if event is not None else "-"
        stats = t.method.stats()
        psnr = f"{self.last_psnr:.2f} dB" if self.last_psnr is not None else "- (train with --eval-every N)"
        state = "paused" if t.paused else ("done" if step >= total else "training")
        lines = [
            f"**{state}** step {step} / {total}",
            f"loss {loss} · test PSNR {psnr}",
            " · ".join(f"{k.replace('_', ' ')} {int(v) if float(v).is_integer() else round(v, 3)}" for k, v in stats.items()),
            f"{self.steps_per_second:.1f} steps/s",
        ]
        return "  \n".join(lines)

    def on_event(self, event: Any) -> None:
        """Called after each training step (throttled to a few updates a second)."""
        now = time.monotonic()
        if now - self._last_update < STATS_PERIOD and event.step < event.total_steps:
            return
        if self._rate_mark is not None and now > self._rate_mark[0]:
            self.steps_per_second = (event.step - self._rate_mark[1]) / (now - self._rate_mark[0])
        self._rate_mark = (now, event.step)
        self._last_update = now
        self.stats.content = self._stats_text(event)


class RenderPanel:
    """Render mode, background, JPEG quality, resolution, and the depth legend."""

    def __init__(self, viewer: "Viewer") -> None:
        self.viewer = viewer
        gui, controls = viewer.server.gui, viewer.controls
        s = viewer.settings
        with gui.add_folder("Render"):
            self.mode = controls.dropdown("Mode", viewer.modes, s.mode)
            self.own_background = controls.checkbox("Model background", s.background is None, hint="untick to choose a colour")
            bg = s.background or (1.0, 1.0, 1.0)
            self.background = controls.rgb("Background", tuple(int(round(v * 255)) for v in bg), disabled=s.background is None)  # type: ignore[arg-type]
            self.max_side = controls.slider("Max resolution", 16, max(2048, s.max_side), 16, s.max_side)
            self.jpeg = controls.slider("JPEG quality", 10, 100, 5, s.jpeg_quality)
            self.moving_ms = controls.slider("Moving frame ms", 20, 1000, 10, int(s.moving_seconds * 1000),
                                             hint="target time of a frame while the camera moves; sets its lower resolution")
            self.auto_range = controls.checkbox("Auto depth range", s.depth_range is None, visible=s.mode == "depth")
            near, far = s.depth_range or (0.0, 1.0)
            self.near = controls.number("Depth near", float(near), 0.0, MAX_DEPTH, 0.01, visible=False)
            self.far = controls.number("Depth far", float(far), 0.0, MAX_DEPTH, 0.01, visible=False)
            self.legend_image = gui.add_image(colorbar(), visible=s.mode == "depth")
            self.legend = gui.add_markdown("", visible=s.mode == "depth")
        self._shown_range: Optional[tuple[float, float]] = None
        for handle in (self.mode, self.own_background, self.background, self.max_side, self.jpeg, self.moving_ms,
                       self.near, self.far):
            handle.on_update(lambda _event: self.apply())
        self.auto_range.on_update(lambda _event: self._on_auto_range())
        viewer.renderer.on_frame.append(self._on_frame)

    def settings_from_controls(self) -> dict[str, Any]:
        """The :class:`ViewSettings` fields the controls hold now."""
        depth_range = None if self.auto_range.value else (float(self.near.value), float(self.far.value))
        background = None if self.own_background.value else tuple(v / 255.0 for v in self.background.value)
        return {
            "mode": str(self.mode.value),
            "background": background,
            "max_side": int(self.max_side.value),
            "jpeg_quality": int(self.jpeg.value),
            "moving_seconds": float(self.moving_ms.value) / 1000.0,
            "depth_range": depth_range,
        }

    def apply(self) -> None:
        """Push the controls to the viewer and show only the controls that matter."""
        depth = self.mode.value == "depth"
        self.background.disabled = bool(self.own_background.value)
        self.auto_range.visible = self.legend.visible = self.legend_image.visible = depth
        self.near.visible = self.far.visible = depth and not self.auto_range.value
        self.viewer.update_settings(**self.settings_from_controls())

    def _on_auto_range(self) -> None:
        """Switching to a fixed range starts from the range shown last."""
        if not self.auto_range.value and self._shown_range is not None:
            self.near.value, self.far.value = (round(v, 4) for v in self._shown_range)
        self.apply()

    def _on_frame(self, frame: Frame, settings: ViewSettings) -> None:
        """Keep the legend's numbers in step with the depth range of the latest frame."""
        if frame.depth_range is None or frame.depth_range == self._shown_range:
            return
        self._shown_range = frame.depth_range
        lo, hi = frame.depth_range
        self.legend.content = f"depth {lo:.3g} (blue) → {hi:.3g} (red)"

