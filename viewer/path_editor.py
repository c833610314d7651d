"""The camera path editor: keyframes from the current view, FOV per keyframe, duration and
smoothness, preview playback, save / load as the JSON that ``render3d render --path FILE``
reads (:mod:`render3d.camera_paths.path_file`), and rendering the video to the run folder.

The browser names files by a plain name only: ``RUN/paths/NAME.json`` and
``RUN/videos/NAME.mp4`` (see :mod:`render3d.viewer.run_files`)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import viser

from render3d.camera_paths.interpolation import Keyframe
from render3d.camera_paths.path_file import CameraPath, load_path, save_path
from render3d.errors import Render3DError
from render3d.viewer.camera import CameraPose
from render3d.viewer.markup import escape_markdown
from render3d.viewer.path_video import render_path_video
from render3d.viewer.run_files import MAX_NAME_LENGTH, run_file, shown_path

if TYPE_CHECKING:
    from render3d.viewer.server import Viewer

PATH_NAME = "camera_path"  # the default name: RUN/paths/camera_path.json
PATHS_FOLDER, VIDEOS_FOLDER = "paths", "videos"
MAX_SECONDS = 600.0  # the longest path the editor accepts (its poses are held in memory)
MAX_FPS = 120
MAX_VIDEO_SIDE = 4096


def keyframe_from_pose(pose: CameraPose) -> Keyframe:
    """A path keyframe (FOV in degrees) at a browser's view."""
    return Keyframe(pose.position, pose.wxyz, math.degrees(pose.fov))


def pose_from_keyframe(key: Keyframe, aspect: float) -> CameraPose:
    return CameraPose(key.rotation, key.position, math.radians(key.fov), aspect)


class PathEditor:
    """Keyframe list, path settings, preview, file I/O and video rendering, with their controls."""

    def __init__(self, viewer: "Viewer") -> None:
        self.viewer = viewer
        self.keyframes: list[Keyframe] = []
        self._keyframe_nodes: list[Any] = []
        self._spline: Optional[Any] = None
        self._preview_stop = threading.Event()
        self._preview_thread: Optional[threading.Thread] = None
        self.video_thread: Optional[threading.Thread] = None
        self.last_video: Optional[Path] = None
        content = viewer.content
        cams = content.train_cameras
        width, height = (cams.width, cams.height) if cams is not None else (640, 480)
        gui, controls = viewer.server.gui, viewer.controls
        with gui.add_folder("Camera path", expand_by_default=False):
            self.add = controls.button("Add keyframe", hint="add the current view as the last keyframe")
            self.selected = controls.dropdown("Keyframe", ("none",), "none")
            self.fov = controls.number("FOV (deg)", 50.0, 1.0, 179.0, 0.5)
            self.move = controls.button("Move to current view")
            self.goto = controls.button("Go to keyframe")
            self.remove = controls.button("Remove keyframe")
            self.seconds = controls.number("Duration (s)", 4.0, 0.1, MAX_SECONDS, 0.5)
            self.fps = controls.number("FPS", 30, 1, MAX_FPS, 1)
            self.smoothness = controls.slider("Smoothness", 0.0, 1.0, 0.05, 0.5)
            self.loop = controls.checkbox("Loop", False)
            self.width = controls.number("Video width", int(width), 16, MAX_VIDEO_SIDE, 2)
            self.height = controls.number("Video height", int(height), 16, MAX_VIDEO_SIDE, 2)
            self.preview = controls.button("Preview", hint="play the path in this browser")
            self.file = controls.text("Path file", PATH_NAME, max_length=4 * MAX_NAME_LENGTH,
                                      hint="a name: saved as paths/NAME.json in the run folder, the video as videos/NAME.mp4")
            self.save = controls.button("Save path")
            self.load = controls.button("Load path")
            self.render = controls.button("Render video", hint="write the video to the run folder's videos/")
            self.progress = gui.add_progress_bar(0.0, visible=False)
            self.status = gui.add_markdown("")
        self.add.on_click(lambda e: self._guard(self.add_keyframe, e.client))
        self.move.on_click(lambda e: self._guard(self.move_keyframe, e.client))
        self.goto.on_click(lambda e: self._guard(self.go_to_keyframe, e.client))
        self.remove.on_click(lambda e: self._guard(self.remove_keyframe))
        self.fov.on_update(lambda _e: self._set_fov())
        self.selected.on_update(lambda _e: self._show_selected())
        for handle in (self.seconds, self.smoothness, self.loop):
            handle.on_update(lambda _e: self._redraw())
        self.preview.on_click(lambda e: self._guard(self.toggle_preview, e.client))
        self.save.on_click(lambda _e: self._guard(self.save_file))
        self.load.on_click(lambda _e: self._guard(self.load_file))
        self.render.on_click(lambda _e: self._guard(self.start_video))

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run a button's action; a user or file error shows in the panel instead of a traceback."""
        try:
            fn(*args)
        except (Render3DError, OSError, ValueError) as exc:
            self.status.content = f"**error:** {escape_markdown(exc)}"

    # ----- keyframes ------------------------------------------------------------------------
    def _index(self) -> Optional[int]:
        value = str(self.selected.value)
        return int(value) - 1 if value.isdigit() and 0 < int(value) <= len(self.keyframes) else None

    def _require_index(self) -> int:
        index = self._index()
        if index is None:
            raise Render3DError("add a keyframe first")
        return index

    def add_keyframe(self, client: Optional[viser.ClientHandle], pose: Optional[CameraPose] = None) -> None:
        """Append a keyframe at ``pose`` (default: the clicking browser's view)."""
        pose = pose or CameraPose.from_handle(client.camera)  # type: ignore[union-attr]
        self.keyframes.append(keyframe_from_pose(pose))
        self._sync_list(len(self.keyframes) - 1)

    def move_keyframe(self, client: viser.ClientHandle) -> None:
        i = self._require_index()
        fov = self.keyframes[i].fov
        self.keyframes[i] = keyframe_from_pose(CameraPose.from_handle(client.camera))
        self.keyframes[i].fov = fov
        self._redraw()

    def go_to_keyframe(self, client: viser.ClientHandle) -> None:
        from render3d.viewer.scene_context import fly_to

        key = self.keyframes[self._require_index()]
        fly_to(client, pose_from_keyframe(key, client.camera.aspect))

    def remove_keyframe(self) -> None:
        i = self._require_index()
        del self.keyframes[i]
        self._sync_list(min(i, len(self.keyframes) - 1))

    def _set_fov(self) -> None:
        i = self._index()
        if i is not None and abs(self.keyframes[i].fov - float(self.fov.value)) > 1e-6:
            self.keyframes[i].fov = float(self.fov.value)
            self._redraw()

    def _sync_list(self, select: int) -> None:
        options = tuple(str(i + 1) for i in range(len(self.keyframes))) or ("none",)
        self.selected.options = options
        self.selected.value = options[select] if self.keyframes and select >= 0 else "none"
        self._show_selected()
        self._redraw()

    def _show_selected(self) -> None:
        i = self._index()
        if i is not None:
            self.fov.value = round(self.keyframes[i].fov, 2)

    # ----- the path ---------------------------------------------------------------------------
    def camera_path(self) -> CameraPath:
        """The path as edited, with the viewer's crop box and background."""
        if not self.keyframes:
            raise Render3DError("the path has no keyframes: add some with 'Add keyframe'")
        s = self.viewer.settings
        return CameraPath(
            keyframes=[Keyframe(k.position, k.rotation, k.fov) for k in self.keyframes],
            fps=float(self.fps.value),
            seconds=float(self.seconds.value),
            smoothness=float(self.smoothness.value),
            loop=bool(self.loop.value),
            resolution=(int(self.width.value), int(self.height.value)),
            crop=(s.crop.lo, s.crop.hi) if s.crop is not None else None,
            background=s.background,
        )

    def set_path(self, path: CameraPath) -> None:
        """Show ``path`` in the editor (after loading a file), its values brought into the controls' ranges."""
        accepted = self.viewer.controls.accepted
        self.keyframes = [Keyframe(k.position, k.rotation, accepted(self.fov, k.fov)) for k in path.keyframes]
        self.fps.value, self.seconds.value = accepted(self.fps, path.fps), accepted(self.seconds, path.seconds)
        self.smoothness.value, self.loop.value = accepted(self.smoothness, path.smoothness), path.loop
        if path.resolution is not None:
            self.width.value, self.height.value = accepted(self.width, path.resolution[0]), accepted(self.height, path.resolution[1])
        self._sync_list(0)

    def _redraw(self) -> None:
        """Draw keyframes as frustums and the interpolated path as a curve."""
        scene = self.viewer.server.scene
        for node in self._keyframe_nodes:
            node.remove()
        self._keyframe_nodes = []
        if self._spline is not None:
            self._spline.remove()
            self._spline = None
        extent = self.viewer.scene_context.extent
        aspect = float(self.width.value) / float(self.height.value)
        for i, key in enumerate(self.keyframes):
            node = scene.add_camera_frustum(
                f"/camera_path/key_{i:03d}", fov=math.radians(key.fov), aspect=aspect, scale=0.06 * extent,
                thickness=2.0, thickness_units="screen", color=(30, 110, 255), wxyz=key.rotation, position=key.position,
            )
            self._keyframe_nodes.append(node)
        if len(self.keyframes) >= 2:
            path = self.camera_path()
            path.fps = max(4.0, 100 / path.seconds)
            c2w, _ = path.poses()
            points = c2w[:, :3, 3].numpy().astype(np.float32)
            self._spline = scene.add_spline_catmull_rom(
                "/camera_path/curve", points=points, closed=path.loop, thickness=3.0, thickness_units="screen", color=(30, 110, 255)
            )

    # ----- preview ----------------------------------------------------------------------------
    def toggle_preview(self, client: viser.ClientHandle) -> None:
        """Play the path in the clicking browser in real time, or stop playing."""
        if self._preview_thread is not None and self._preview_thread.is_alive():
            self._preview_stop.set()
            return
        path = self.camera_path()
        c2w, fov = path.poses()
        aspect = float(self.width.value) / float(self.height.value)
        poses = [CameraPose.from_c2w(c2w[i], math.radians(float(fov[i])), aspect) for i in range(len(c2w))]
        self._preview_stop.clear()
        self._preview_thread = threading.Thread(target=self._play, args=(client, poses, 1.0 / path.fps), daemon=True)
        self._preview_thread.start()

    def _play(self, client: viser.ClientHandle, poses: list[CameraPose], frame_seconds: float) -> None:
        from render3d.viewer.scene_context import fly_to

        self.preview.label = "Stop preview"
        start = time.monotonic()
        try:
            for i, pose in enumerate(poses):
                if self._preview_stop.is_set():
                    break
                fly_to(client, pose)
                delay = start + (i + 1) * frame_seconds - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            self.preview.label = "Preview"

    # ----- files and video --------------------------------------------------------------------
    def path_file(self) -> Path:
        """``RUN/paths/NAME.json`` for the name in the "Path file" box.

        Raises:
            Render3DError: the box does not hold a plain name (see :mod:`render3d.viewer.run_files`).
        """
        return run_file(self.viewer.content.run_dir, PATHS_FOLDER, str(self.file.value), ".json")

    def _shown(self, file: Path) -> str:
        """``file`` for the status line: relative to the run folder, escaped."""
        return escape_markdown(shown_path(file, self.viewer.content.run_dir))

    def save_file(self) -> Path:
        """Write the path JSON to ``RUN/paths/`` (``render3d render --path FILE`` reads it)."""
        file = self.path_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        save_path(self.camera_path(), file)
        self.status.content = f"saved {len(self.keyframes)} keyframes to {self._shown(file)}"
        return file

    def load_file(self) -> None:
        """Show the path saved in ``RUN/paths/`` under the typed name."""
        file = self.path_file()
        if not file.is_file():
            raise Render3DError(f"no saved path named {file.name} in {PATHS_FOLDER}/")
        self.set_path(load_path(file))
        self.status.content = f"loaded {len(self.keyframes)} keyframes from {self._shown(file)}"

    def start_video(self) -> None:
        """Render the path to ``RUN/videos/NAME.mp4`` in the background, with progress."""
        if self.video_thread is not None and self.video_thread.is_alive():
            raise Render3DError("a video is already rendering")
        path = self.camera_path()
        out = run_file(self.viewer.content.run_dir, VIDEOS_FOLDER, self.path_file().stem, ".mp4")
        self.progress.value, self.progress.visible = 0.0, True
        self.status.content = f"rendering {path.num_frames} frames to {self._shown(out)}"
        self.video_thread = threading.Thread(target=self._render_video, args=(path, out), daemon=True)
        self.video_thread.start()

    def _render_video(self, path: CameraPath, out: Path) -> None:
        def progress(done: int, total: int) -> None:
            self.progress.value = 100.0 * done / total
            self.status.content = f"rendering frame {done} / {total} to {self._shown(out)}"

        try:
            render_path_video(self.viewer.content.model, path, out, self.viewer.share, path.resolution or (640, 480), progress)
            self.last_video = out
            self.status.content = f"wrote {self._shown(out)}"
        except Exception as exc:  # shown in the panel: the viewer keeps running
            self.status.content = f"**video failed:** {escape_markdown(exc)}"
        finally:
            self.progress.visible = False
