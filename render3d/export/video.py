"""Frame sinks: an H.264 MP4 encoder fed one frame at a time, or a folder of PNGs.

Frames are streamed (nothing is held in memory). H.264 in yuv420p needs even sizes, so an
odd width or height is padded by one replicated edge pixel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Protocol, Union

import numpy as np

from render3d.errors import Render3DError


def even_size(width: int, height: int) -> tuple[int, int]:
    """The smallest even size that holds ``width`` x ``height``."""
    return width + width % 2, height + height % 2


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad an ``[H, W, 3]`` frame to even dimensions by repeating its last row / column."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class FrameSink(Protocol):
    """Where rendered frames go, one ``[H, W, 3]`` uint8 array at a time."""

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


class VideoWriter:
    """Streams frames to ffmpeg (libx264, yuv420p) through imageio-ffmpeg.

    Use as a context manager; the file appears when the writer is closed.
    """

    def __init__(self, path: Union[str, os.PathLike], fps: float, quality: float = 8.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self._gen = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = (width, height)
        self._gen = imageio_ffmpeg.write_frames(
            str(self.path), (width, height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=self.quality, macro_block_size=1, ffmpeg_log_level="error",
        )
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``[H, W, 3]`` uint8 frame (every frame must have the first one's size)."""
        frame = pad_even(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        h, w = frame.shape[:2]
        if self._gen is None:
            self._open(w, h)
        elif (w, h) != self._size:
            raise Render3DError(f"{self.path}: frame {self.frames} is {w}x{h} but the video is {self._size[0]}x{self._size[1]}")
        self._gen.send(frame.tobytes())
        self.frames += 1

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PngFolder:
    """Writes frames as ``PREFIX00000.png``, ``PREFIX00001.png``, ... in a folder."""

    def __init__(self, folder: Union[str, os.PathLike], prefix: str = "frame_") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        from render3d.evaluate import write_png

        write_png(self.folder / f"{self.prefix}{self.frames:05d}.png", frame)
        self.frames += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> "PngFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
