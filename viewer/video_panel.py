"""The "Video model" panel (``render3d view RUN --video-model MODEL``): generate a clip with a
video world model from the current view along the path editor's path, and play it beside
the 3D model's own render along the same cameras.

The path editor's keyframes give the camera motion: the path is resampled to the clip's
frame count and moved rigidly so that it starts at the clicking browser's view (its motion
relative to its first keyframe is what the world model sees). With fewer than two
keyframes the clip orbits the scene centre from the current view. The clip is written to
``RUN/videos/NAME-generated.mp4`` (NAME: the path editor's "Path file") and played in the
panel, generated on the left and the 3D render on the right.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from render3d.camera_paths.framing import frame_from_bounds, scene_frame
from render3d.camera_paths.interpolation import cameras_from_poses, interpolate_keyframes
from render3d.errors import Render3DError
from render3d.viewer.camera import CameraPose
from render3d.viewer.markup import escape_markdown
from render3d.viewer.run_files import run_file, shown_path

if TYPE_CHECKING:
    from render3d.video.generate import VideoModel
    from render3d.viewer.server import Viewer

MAX_FRAMES = 65
PANEL_SIDE = 256  # pixels of each half of the played clip


class VideoPanel:
    """Controls, background generation and playback of one world model's clips."""

    def __init__(self, viewer: "Viewer", model: "VideoModel") -> None:
        self.viewer = viewer
        self.model = model
        self.thread: Optional[threading.Thread] = None
        self.frames: list[np.ndarray] = []
        self.last_video = None
        self._stop_play = threading.Event()
        gui, controls = viewer.server.gui, viewer.controls
        w, h = model.size
        with gui.add_folder("Video model"):
            self.about = gui.add_markdown(escape_markdown(f"{w}x{h} clips, {model.fps:g} fps; trained on {model.info.get('clips', '?')}"))
            self.n_frames = controls.number("Frames", int(model.chunk_frames), 5, MAX_FRAMES, 4)
            self.degrees = controls.slider("Orbit deg/frame", -15.0, 15.0, 0.5, 4.0,
                                           hint="the motion when the path editor has fewer than two keyframes")
            self.temperature = controls.slider("Temperature", 0.0, 2.0, 0.05, 0.0, hint="0: the most likely tokens")
            self.temperature.visible = model.world.family == "tokens"  # a latent-diffusion model samples by its seed
            self.generate_button = controls.button("Generate from view", hint="a clip from this view along the path editor's path")
            self.play_button = controls.button("Play again")
            self.image = gui.add_image(np.full((PANEL_SIDE, 2 * PANEL_SIDE, 3), 255, np.uint8), label="generated | 3D render")
            self.status = gui.add_markdown("")
        self.generate_button.on_click(lambda e: self._guard(self.start, CameraPose.from_handle(e.client.camera)))
        self.play_button.on_click(lambda _e: self._guard(self.play))

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (Render3DError, OSError, ValueError) as exc:
            self.status.content = f"**error:** {escape_markdown(exc)}"

    # ----- cameras ----------------------------------------------------------------------------------
    def cameras(self, pose: CameraPose, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Intrinsics ``[T, 3, 3]`` and camera-to-world ``[T, 4, 4]`` of the clip starting at ``pose``."""
        from render3d.video.motion import orbit_arc

        start = pose.c2w().double()
        keys = self.viewer.path_editor.keyframes
        if len(keys) >= 2:
            path = self.viewer.path_editor.camera_path()
            c2w, fov = interpolate_keyframes(path.keyframes, frames, path.smoothness, path.loop)
            c2w = start @ torch.linalg.inv(c2w[0]) @ c2w
        else:
            content = self.viewer.content
            frame = (scene_frame(content.train_cameras, content.bounds) if content.train_cameras is not None
                     else frame_from_bounds(content.bounds))
            c2w = orbit_arc(frame, frames, float(self.degrees.value), start)
            fov = torch.full((frames,), math.degrees(pose.fov), dtype=torch.float64)
        cams = cameras_from_poses(c2w, fov, *self.model.size)
        return cams.K, cams.c2w

    # ----- generating ---------------------------------------------------------------------------------
    def start(self, pose: CameraPose) -> None:
        """Generate in the background from ``pose``."""
        if self.thread is not None and self.thread.is_alive():
            raise Render3DError("a clip is already being generated")
        K, c2w = self.cameras(pose, int(self.n_frames.value))
        self.status.content = f"generating {len(c2w)} frames..."
        self.thread = threading.Thread(target=self._generate, args=(K, c2w, float(self.temperature.value)), daemon=True)
        self.thread.start()

    def _generate(self, K: torch.Tensor, c2w: torch.Tensor, temperature: float) -> None:
        from render3d.video.conditioning import render_views
        from render3d.video.output import clip_frames, write_clip

        try:
            scene = self.viewer.content.model
            reference = self.viewer.share.run(lambda: render_views(scene, K, c2w, self.model.size))
            started = time.perf_counter()
            video = self.model.generate(reference[:1], K[None], c2w[None], temperature, torch.Generator().manual_seed(0))[0]
            seconds = time.perf_counter() - started
            scale = max(1, PANEL_SIDE // max(self.model.size))
            self.frames = clip_frames(video, scale, reference)
            out = run_file(self.viewer.content.run_dir, "videos", f"{self.viewer.path_editor.path_file().stem}-generated", ".mp4")
            self.last_video = write_clip(video, out, self.model.fps, scale, reference)
            self.status.content = (f"{len(video)} frames in {seconds:.1f} s; wrote "
                                   f"{escape_markdown(shown_path(out, self.viewer.content.run_dir))}")
            self.play()
        except Exception as exc:  # shown in the panel: the viewer keeps running
            self.status.content = f"**generation failed:** {escape_markdown(exc)}"

    # ----- playing ------------------------------------------------------------------------------------
    def play(self, loops: int = 2) -> None:
        """Play the last clip in the panel ``loops`` times (in the background)."""
        if not self.frames:
            raise Render3DError("generate a clip first")
        self._stop_play.set()
        stop = self._stop_play = threading.Event()
        threading.Thread(target=self._play, args=(list(self.frames), loops, stop), daemon=True).start()

    def stop_playing(self) -> None:
        """Stop the playback loop (before the viewer stops)."""
        self._stop_play.set()

    def _play(self, frames: list[np.ndarray], loops: int, stop: threading.Event) -> None:
        period = 1.0 / self.model.fps
        for _ in range(loops):
            for frame in frames:
                if stop.is_set():
                    return
                self.image.image = frame
                time.sleep(period)
