"""Frame sinks: an H.264 MP4 encoder fed one frame at a time, or a folder of PNGs.

Frames are streamed (nothing is held in memory). H.264 in yuv420p needs even sizes, so an
odd width or height is padded by one replicated edge pixel. Both sinks write into a
temporary file or folder that takes the final name only when :meth:`close` succeeds;
:meth:`abort` (or an exception inside a ``with`` block) throws it away, so an interrupted
render never leaves a short video or half a folder under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Protocol, Union

import numpy as np

from render3d.errors import Render3DError
from render3d.files import PendingFile, output_error


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad an ``[H, W, 3]`` frame to even dimensions by repeating its last row / column."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class FrameSink(Protocol):
    """Where rendered frames go, one ``[H, W, 3]`` uint8 array at a time; ``target`` is where they end up."""

    target: Path

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None:
        """Finish: the output appears under its final name."""
        ...

    def abort(self) -> None:
        """Give up: nothing appears (an older output of the same name stays)."""
        ...


class _SinkContext:
    """``with`` support: close on success, abort on an exception."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()  # type: ignore[attr-defined]
        else:
            self.abort()  # type: ignore[attr-defined]


class VideoWriter(_SinkContext):
    """Streams frames to ffmpeg (libx264, yuv420p) through imageio-ffmpeg into a temporary file
    that becomes ``path`` on :meth:`close`."""

    def __init__(self, path: Union[str, os.PathLike], fps: float, quality: float = 8.0) -> None:
        self.path = self.target = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self._gen = None
        self._pending: Optional[PendingFile] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _fail(self, exc: BaseException) -> Render3DError:
        self.abort()
        if isinstance(exc, OSError) and exc.errno is not None:
            return output_error(self.path, exc)
        return Render3DError(f"cannot write video {self.path}: ffmpeg stopped ({exc}); is the disk full? nothing was overwritten")

    def _open(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        self._pending = PendingFile(self.path)
        self._size = (width, height)
        try:
            self._gen = imageio_ffmpeg.write_frames(
                str(self._pending.path), (width, height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=self.quality, macro_block_size=1, ffmpeg_log_level="error",
            )
            self._gen.send(None)
        except (OSError, RuntimeError) as exc:
            raise self._fail(exc) from None

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``[H, W, 3]`` uint8 frame (every frame must have the first one's size)."""
        frame = pad_even(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        h, w = frame.shape[:2]
        if self._gen is None:
            self._open(w, h)
        elif (w, h) != self._size:
            self.abort()
            raise Render3DError(f"{self.path}: frame {self.frames} is {w}x{h} but the video is {self._size[0]}x{self._size[1]}")
        try:
            self._gen.send(frame.tobytes())
        except (OSError, RuntimeError) as exc:
            raise self._fail(exc) from None
        self.frames += 1

    def close(self) -> None:
        """Finish encoding and move the video to ``path``."""
        if self._gen is None:
            return
        gen, self._gen = self._gen, None
        try:
            gen.close()
        except (OSError, RuntimeError) as exc:
            raise self._fail(exc) from None
        if self._pending is not None:
            self._pending.commit()
            self._pending = None

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial video."""
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                gen.close()
            except Exception:  # noqa: BLE001 - ffmpeg is being torn down; the file is discarded anyway
                pass
        if self._pending is not None:
            self._pending.discard()
            self._pending = None


class PngFolder(_SinkContext):
    """Writes frames as ``PREFIX00000.png``, ``PREFIX00001.png``, ... into a temporary folder that
    replaces ``folder`` on :meth:`close`."""

    def __init__(self, folder: Union[str, os.PathLike], prefix: str = "frame_") -> None:
        self.folder = self.target = Path(folder)
        self.prefix = prefix
        self.frames = 0
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            self._work = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".part", dir=self.folder.parent))
        except OSError as exc:
            raise output_error(self.folder, exc) from None

    def write(self, frame: np.ndarray) -> None:
        from render3d.images import write_png

        write_png(self._work / f"{self.prefix}{self.frames:05d}.png", frame)
        self.frames += 1

    def close(self) -> None:
        """Put the finished folder in place of ``folder`` (an older one is removed)."""
        if not self._work.exists():
            return
        old = None
        try:
            if self.folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".old", dir=self.folder.parent))
                os.replace(self.folder, old / "previous")
            os.replace(self._work, self.folder)
        except OSError as exc:
            raise output_error(self.folder, exc) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)
