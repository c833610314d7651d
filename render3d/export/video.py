"""Frame sinks: an H.264 MP4 encoder fed one frame at a time, or a folder of PNGs.

Frames are streamed (nothing is held in memory). H.264 in yuv420p needs even sizes, so an
odd width or height is padded by one replicated edge pixel. Both sinks write into a
temporary file or folder that takes the final name only when :meth:`close` succeeds;
:meth:`abort` (or an exception inside a ``with`` block) throws it away, so an interrupted
render never leaves a short video or half a folder under the final name.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Protocol, Union

import numpy as np

from render3d.errors import Render3DError
from render3d.files import PendingFile, output_error


# ffmpeg's words for the errors that mean "no room for the output" (its stderr is all it tells)
_DISK_ERRORS = {"No space left on device": errno.ENOSPC, "File too large": errno.EFBIG, "Disk quota exceeded": errno.EDQUOT}


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
    """Streams frames to ffmpeg (libx264, yuv420p; imageio-ffmpeg's binary) into a temporary file
    that becomes ``path`` on :meth:`close`.

    ffmpeg's exit status and error lines are checked, so a video ffmpeg could not finish (a full
    disk) is an error and never takes the final name.
    """

    def __init__(self, path: Union[str, os.PathLike], fps: float, quality: float = 8.0) -> None:
        self.path = self.target = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self._proc: Optional[subprocess.Popen] = None
        self._stderr: Optional[threading.Thread] = None
        self._errors: list[str] = []
        self._pending: Optional[PendingFile] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _fail(self, exc: Optional[BaseException] = None) -> Render3DError:
        """Stop ffmpeg, delete the partial video, and say why (ffmpeg's own last error line when it gave one)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:  # our pipe broke: give ffmpeg a moment to say why it is dying
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.abort()
        reason = self._errors[-1] if self._errors else ""
        for text, code in _DISK_ERRORS.items():
            if text in reason:
                return output_error(self.path, OSError(code, text))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS.values():
            return output_error(self.path, exc)
        if proc is not None and proc.returncode == -getattr(signal, "SIGXFSZ", 0):  # killed at a file-size limit
            return output_error(self.path, OSError(errno.EFBIG, "File too large"))
        why = reason or (f"exit status {proc.returncode}" if proc is not None and proc.returncode else str(exc))
        return Render3DError(f"cannot write video {self.path}: ffmpeg stopped ({why}); nothing was overwritten")

    def _open(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        self._pending = PendingFile(self.path)
        self._size = (width, height)
        crf = int((1 - self.quality / 10.0) * 51)  # imageio-ffmpeg's mapping of quality 0-10 to x264's CRF
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
            "-pix_fmt", "rgb24", "-r", str(Fraction(self.fps).limit_denominator()), "-i", "-", "-an",
            "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-v", "error", str(self._pending.path),
        ]
        try:  # its own session: a Ctrl-C meant for render3d does not cut the video short under it
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True)
        except OSError as exc:
            raise self._fail(exc) from None
        self._stderr = threading.Thread(target=self._read_errors, args=(self._proc.stderr,), daemon=True)
        self._stderr.start()

    def _read_errors(self, stream: Any) -> None:
        """Keep ffmpeg's error lines (a thread: a full stderr pipe would stall ffmpeg)."""
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").strip()
                if line and len(self._errors) < 100:
                    self._errors.append(line)
        except (OSError, ValueError):  # the pipe was closed under us: ffmpeg is gone
            pass

    def _reap(self, proc: subprocess.Popen) -> None:
        """Wait for ffmpeg and for the last of its error lines."""
        try:
            proc.stdin.close()
        except OSError:  # a broken pipe: ffmpeg is gone
            pass
        proc.wait()
        if self._stderr is not None:
            self._stderr.join(timeout=5)
        proc.stderr.close()

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``[H, W, 3]`` uint8 frame (every frame must have the first one's size)."""
        frame = pad_even(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        h, w = frame.shape[:2]
        if self._proc is None:
            self._open(w, h)
        elif (w, h) != self._size:
            self.abort()
            raise Render3DError(f"{self.path}: frame {self.frames} is {w}x{h} but the video is {self._size[0]}x{self._size[1]}")
        try:
            self._proc.stdin.write(frame.tobytes())
        except OSError as exc:  # ffmpeg is gone (BrokenPipeError): _fail reads why
            raise self._fail(exc) from None
        self.frames += 1

    def close(self) -> None:
        """Finish encoding and move the video to ``path``."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError as exc:
            raise self._fail(exc) from None
        if proc.wait() != 0:
            raise self._fail()
        self._proc = None
        self._reap(proc)
        if self._pending is not None:
            self._pending.commit()
            self._pending = None

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial video."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            self._reap(proc)
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
        """Put the finished folder in place of ``folder`` (an older one is removed).

        Folders cannot be swapped in one rename: the older one is first moved aside, and put
        back if the new one cannot take its place. (A process killed between the two renames
        leaves the older folder in ``.NAME.*.old/previous`` beside it.)
        """
        if not self._work.exists():
            return
        old = None
        try:
            if self.folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".old", dir=self.folder.parent))
                os.replace(self.folder, old / "previous")
            os.replace(self._work, self.folder)
        except OSError as exc:
            if old is not None and (old / "previous").exists() and not self.folder.exists():
                os.replace(old / "previous", self.folder)  # the older folder back where it was
            for leftover in (self._work, old):
                if leftover is not None:
                    shutil.rmtree(leftover, ignore_errors=True)
            raise output_error(self.folder, exc) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)
