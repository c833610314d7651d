"""Render a camera path to an MP4 from inside the viewer, sharing the device with training
and reporting progress frame by frame."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from render3d.camera_paths.path_file import CameraPath
from render3d.cameras import Cameras
from render3d.export.render import render_frames
from render3d.export.video import FrameSink, VideoWriter
from render3d.protocol import RenderOutput, SceneModel
from render3d.crop import CropBox, cropped
from render3d.viewer.device_share import DeviceShare


class SharedDeviceModel:
    """A scene model whose renders take turns with training through a :class:`DeviceShare`."""

    def __init__(self, model: SceneModel, share: DeviceShare) -> None:
        self.model = model
        self.share = share
        self.background = model.background

    def render(self, cameras: Cameras, mode: str = "rgb") -> RenderOutput:
        return self.share.run(lambda: self.model.render(cameras, mode))


class ProgressSink:
    """Passes frames on to ``sink`` and calls ``on_frame(done)`` after each."""

    def __init__(self, sink: FrameSink, on_frame: Callable[[int], None]) -> None:
        self.sink = sink
        self.target = sink.target
        self.on_frame = on_frame
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.sink.write(frame)
        self.frames += 1
        self.on_frame(self.frames)

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()


def snapshot(model: SceneModel, crop: Optional[CropBox], share: DeviceShare) -> SceneModel:
    """A frozen copy of ``model`` (limited to ``crop``), so a video shows one training state."""
    return share.run(lambda: copy.deepcopy(cropped(model, crop)))


def render_path_video(
    model: SceneModel,
    path: CameraPath,
    out_file: Path,
    share: DeviceShare,
    size: tuple[int, int],
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> Path:
    """Render ``path`` (its crop and background included) at ``size`` (width, height) into ``out_file``."""
    crop = CropBox(*path.crop) if path.crop is not None else None
    frozen = SharedDeviceModel(snapshot(model, crop, share), share)
    cameras = path.cameras(*size)
    total = len(cameras)
    background = torch.tensor(path.background, dtype=torch.float32) if path.background is not None else None
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out_file, path.fps) as writer:
        sink = ProgressSink(writer, lambda done: on_progress(done, total))
        render_frames(frozen, cameras, {"all": sink}, ["rgb"], background=background, progress=False)
    return out_file
