"""Scene context drawn by the browser itself: training cameras (click one to fly there),
sparse points, the crop box, and for splat scenes viser's own browser-side splat renderer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import viser

from render3d.camera_paths.framing import scene_frame
from render3d.crop import CropBox, cropped
from render3d.errors import Render3DError
from render3d.protocol import HasGaussians
from render3d.splat.ply import for_classic_renderers
from render3d.viewer.camera import CameraPose, frustum_scale, pose_of
from render3d.viewer.markup import escape_markdown
from render3d.viewer.run_files import shown_path

if TYPE_CHECKING:
    from render3d.viewer.server import Viewer

MAX_FRUSTUMS = 300


def thumbnail(image: np.ndarray, side: int = 96) -> np.ndarray:
    """A uint8 copy of ``image [H, W, 3]`` whose longer side is at most ``side`` pixels."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image))
    pil.thumbnail((side, side))
    return np.asarray(pil)


def fly_to(client: viser.ClientHandle, pose: CameraPose) -> None:
    """Move one browser's camera to ``pose``."""
    with client.atomic():
        client.camera.position = pose.position
        client.camera.wxyz = pose.wxyz
        client.camera.fov = pose.fov


def splat_arrays(model: HasGaussians) -> dict[str, np.ndarray]:
    """What ``scene.add_gaussian_splats`` takes: centres, 3x3 covariances, RGB (the SH DC colour) and opacities."""
    with torch.no_grad():
        g = model.gaussians()
        return {
            "centers": g.means.float().cpu().numpy(),
            "covariances": g.covariances().float().cpu().numpy(),
            "rgbs": g.rgb().float().cpu().numpy(),
            "opacities": g.opacities().float().reshape(-1, 1).cpu().numpy(),
        }


class SceneContext:
    """Frustums, points, crop box and browser-side splats, with their controls."""

    def __init__(self, viewer: "Viewer") -> None:
        self.viewer = viewer
        self.content = viewer.content
        gui, scene, controls = viewer.server.gui, viewer.server.scene, viewer.controls
        lo, hi = self.content.bounds[0].tolist(), self.content.bounds[1].tolist()
        self.extent = float(np.linalg.norm(np.subtract(hi, lo))) or 1.0
        self._frustum_indices: list[int] = []
        self._frustum_cameras = self.content.train_cameras
        self.frustums = self._add_frustums()
        self.points = self._add_points()
        self._splats: Optional[Any] = None
        with gui.add_folder("Scene"):
            self.show_cameras = controls.checkbox("Training cameras", True, visible=bool(self.frustums))
            self.show_points = controls.checkbox("Sparse points", True, visible=self.points is not None)
            self.crop_on = controls.checkbox("Crop box", False, hint="render and export only what is inside the box")
            step = round(self.extent / 100, 4) or 0.01
            reach = (min(lo) - 10 * self.extent, max(hi) + 10 * self.extent)  # how far the box may go
            self.crop_min = controls.vector3("Crop min", lo, *reach, step, visible=False)
            self.crop_max = controls.vector3("Crop max", hi, *reach, step, visible=False)
            splats = isinstance(self.content.model, HasGaussians)
            self.export_ply = controls.button("Export cropped PLY", visible=False) if splats else None
            self.browser_splats = controls.checkbox("Browser splat renderer", False, visible=splats,
                                                   hint="hand the Gaussians to viser's renderer in the browser (DC colour only)")
            self.status = gui.add_markdown("")
        self.crop_box = scene.add_box("/crop_box", color=(255, 140, 0), dimensions=(1.0, 1.0, 1.0), wireframe=True, visible=False)
        self.show_cameras.on_update(lambda _e: self._set_visible(self.frustums, self.show_cameras.value))
        self.show_points.on_update(lambda _e: self.points is not None and setattr(self.points, "visible", self.show_points.value))
        for handle in (self.crop_on, self.crop_min, self.crop_max):
            handle.on_update(lambda _e: self.apply_crop())
        self.browser_splats.on_update(lambda _e: self.toggle_browser_splats())
        if self.export_ply is not None:
            self.export_ply.on_click(lambda _e: self.export_cropped_ply())

    # ----- training cameras and points ------------------------------------------------------
    def _add_frustums(self) -> list[Any]:
        cams, images = self.content.train_cameras, self.content.train_images
        if cams is None or len(cams) == 0:
            return []
        picks = np.linspace(0, len(cams) - 1, min(len(cams), MAX_FRUSTUMS)).round().astype(int)
        scale = frustum_scale(cams)
        handles = []
        for i in np.unique(picks):
            pose = pose_of(cams, int(i))
            image = thumbnail(images[i].numpy()) if images is not None else None
            handle = self.viewer.server.scene.add_camera_frustum(
                f"/cameras/{i:04d}", fov=pose.fov, aspect=pose.aspect, scale=scale, thickness=1.5, thickness_units="screen",
                image=image, format="jpeg", jpeg_quality=70, wxyz=pose.wxyz, position=pose.position,
            )
            handle.on_click(lambda event, i=int(i): fly_to(event.client, pose_of(self._frustum_cameras, i)))
            handles.append(handle)
            self._frustum_indices.append(int(i))
        return handles

    def move_frustums(self, cameras: Any) -> None:
        """Put the training-camera frustums at ``cameras``' poses (the poses ``--splat.pose-opt`` has refined so far)."""
        self._frustum_cameras = cameras
        for handle, i in zip(self.frustums, self._frustum_indices):
            pose = pose_of(cameras, i)
            handle.wxyz, handle.position = pose.wxyz, pose.position

    def _add_points(self) -> Optional[Any]:
        pts, colors = self.content.points, self.content.point_colors
        if pts is None or len(pts) == 0:
            return None
        colors_np = colors.numpy().astype(np.uint8) if colors is not None else np.full((len(pts), 3), 128, np.uint8)
        cams = self.content.train_cameras
        # a few pixels wide from where the cameras stand (the box of a capture can be far larger than its subject)
        reach = scene_frame(cams).radius if cams is not None and len(cams) else self.extent
        return self.viewer.server.scene.add_point_cloud(
            "/points", points=pts.float().numpy(), colors=colors_np, point_size=0.002 * reach
        )

    @staticmethod
    def _set_visible(handles: list[Any], visible: bool) -> None:
        for h in handles:
            h.visible = visible

    # ----- crop box -------------------------------------------------------------------------
    def current_crop(self) -> Optional[CropBox]:
        """The crop box when it is switched on and not empty."""
        if not self.crop_on.value:
            return None
        lo = tuple(float(v) for v in self.crop_min.value)
        hi = tuple(float(v) for v in self.crop_max.value)
        return CropBox(lo, hi)  # type: ignore[arg-type]

    def apply_crop(self) -> None:
        box = self.current_crop()
        on = box is not None
        self.crop_min.visible = self.crop_max.visible = self.crop_box.visible = on
        if self.export_ply is not None:
            self.export_ply.visible = on
        if box is not None:
            self.crop_box.dimensions = box.size
            self.crop_box.position = box.center
        self.viewer.update_settings(crop=box)

    def export_cropped_ply(self) -> Path:
        """Write the Gaussians inside the crop box as a reference 3DGS PLY in the run folder."""
        from render3d.splat.ply import save_ply

        box = self.current_crop()
        model = self.viewer.share.run(lambda: cropped(self.content.model, box))
        if not isinstance(model, HasGaussians):
            raise Render3DError("only Gaussian scenes export a cropped PLY")
        out = self.content.run_dir / "exports" / "cropped.ply"
        save_ply(model, out, cameras=self.content.train_cameras)
        self.status.content = f"wrote {escape_markdown(shown_path(out, self.content.run_dir))} ({model.num_gaussians} Gaussians)"
        return out

    # ----- browser-side splats --------------------------------------------------------------
    def toggle_browser_splats(self) -> None:
        """Show the Gaussians with viser's renderer (server frames off), or go back to server frames."""
        on = bool(self.browser_splats.value)
        if self._splats is not None:
            self._splats.remove()
            self._splats = None
        if on:
            content = self.content
            arrays = self.viewer.share.run(
                lambda: splat_arrays(for_classic_renderers(cropped(content.model, self.current_crop()), content.train_cameras)))
            self._splats = self.viewer.server.scene.add_gaussian_splats("/splats", **arrays)
            for client in self.viewer.server.get_clients().values():
                client.scene.set_background_image(None)
        self.viewer.update_settings(enabled=not on)
