"""Clip datasets: fixed-length clips with (optionally) per-frame cameras, in a train and a held-out split.

A clip folder (``render3d video data ... --out CLIPS``) holds::

    clips.pt        frames (uint8 [N, T, H, W, 3]) and, for rendered clips, per-frame
                    camera-to-world [N, T, 4, 4] and intrinsics [N, T, 3, 3] (the "actions"),
                    for the train and test splits; tensors and plain values only
    dataset.json    what the clips are: source, sizes, split, path style, note
    preview.png     the first frames of a few train and test clips, one clip per row

The test split is fixed when the folder is made (whole camera paths drawn from their own
random stream, or a separate time range of a video) and is never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from torch import Tensor

from render3d.errors import Render3DError

CLIPS_FILE = "clips.pt"
VERSION = 1


@dataclass
class ClipSplit:
    """One split: frames uint8 ``[N, T, H, W, 3]``; cameras ``c2w [N, T, 4, 4]`` and ``K [N, T, 3, 3]`` or None."""

    frames: Tensor
    c2w: Optional[Tensor] = None
    K: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def posed(self) -> bool:
        return self.c2w is not None

    def video(self, index: Tensor | list[int] | slice, frames: Optional[slice] = None) -> Tensor:
        """Clips ``index`` as floats ``[B, T, 3, H, W]`` in ``[0, 1]`` (optionally a time window)."""
        x = self.frames[index]
        if frames is not None:
            x = x[:, frames]
        return x.permute(0, 1, 4, 2, 3).float() / 255.0

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "c2w": self.c2w, "K": self.K}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipSplit":
        return cls(data["frames"], data.get("c2w"), data.get("K"))


@dataclass
class ClipSet:
    """Train and held-out clips plus what they are (``meta``: source, kind, fps, frame, pose scale, note)."""

    train: ClipSplit
    test: ClipSplit
    meta: dict[str, Any] = field(default_factory=dict)
    root: Optional[Path] = None

    @property
    def frames(self) -> int:
        return int(self.train.frames.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.train.frames.shape[3]), int(self.train.frames.shape[2])

    @property
    def posed(self) -> bool:
        return self.train.posed

    @property
    def pose_scale(self) -> float:
        return float(self.meta.get("pose_scale", 1.0))

    @property
    def name(self) -> str:
        return self.root.name if self.root is not None else str(self.meta.get("source", "clips"))

    def summary(self) -> str:
        w, h = self.size
        poses = "with camera poses" if self.posed else "no poses"
        return f"{self.name}: {len(self.train)} train / {len(self.test)} held-out clips of {self.frames} frames {w}x{h}, {poses}"

    def split(self, name: str) -> ClipSplit:
        if name not in ("train", "test"):
            raise ValueError(f"split must be train or test, not {name!r}")
        return self.train if name == "train" else self.test

    # ----- files ----------------------------------------------------------------------------------
    def save(self, folder: str | Path, preview_clips: int = 4) -> Path:
        """Write ``clips.pt``, ``dataset.json`` and ``preview.png`` into ``folder`` (atomically, file by file)."""
        from render3d.checkpoints import save_weights
        from render3d.files import write_json
        from render3d.images import write_png

        folder = Path(folder)
        save_weights({"version": VERSION, "kind": "video-clips", "meta": self.meta,
                      "train": self.train.to_dict(), "test": self.test.to_dict()}, folder / CLIPS_FILE)
        write_json({**self.meta, "train_clips": len(self.train), "test_clips": len(self.test), "frames": self.frames,
                    "width": self.size[0], "height": self.size[1], "posed": self.posed}, folder / "dataset.json")
        write_png(folder / "preview.png", preview_grid(self, preview_clips))
        self.root = folder
        return folder


def preview_grid(clips: ClipSet, per_split: int = 4, every: int = 2, pad: int = 2) -> np.ndarray:
    """One row per clip (first ``per_split`` train clips, then test clips), every ``every``-th frame."""
    rows = [clips.train.frames[i] for i in range(min(per_split, len(clips.train)))]
    rows += [clips.test.frames[i] for i in range(min(per_split, len(clips.test)))]
    return frame_grid([r[::every].numpy() for r in rows], pad)


def frame_grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of uint8 frames ``[T_i, H, W, 3]`` on a white canvas, ``pad`` pixels apart."""
    t = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    canvas = np.full((len(rows) * (h + pad) + pad, t * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            canvas[pad + i * (h + pad): pad + i * (h + pad) + h, pad + j * (w + pad): pad + j * (w + pad) + w] = frame
    return canvas


def load_clips(path: str | Path) -> ClipSet:
    """A clip folder of ``render3d video data`` (or its ``clips.pt``), with one-line errors."""
    from render3d.checkpoints import load_tagged, require_keys

    p = Path(path).expanduser()
    file = p / CLIPS_FILE if p.is_dir() else p
    if not file.is_file():
        raise Render3DError(f"no clips at {file}: make them with `render3d video data SOURCE --out {p}`")
    data = load_tagged(file, ("video-clips",), VERSION, "clip file")
    require_keys(data, ("train", "test", "meta"), file, what="clip file")
    clips = ClipSet(ClipSplit.from_dict(data["train"]), ClipSplit.from_dict(data["test"]), dict(data["meta"]), file.parent)
    if len(clips.train) == 0 or len(clips.test) == 0:
        raise Render3DError(f"{file} has {len(clips.train)} train and {len(clips.test)} test clips: both splits need clips")
    return clips


def require_posed(clips: ClipSet, what: str) -> None:
    """A one-line error unless the clips carry camera poses."""
    if not clips.posed:
        raise Render3DError(f"{what} needs clips with camera poses, and {clips.name} has none (a video file): "
                            "make clips from the default scene or a trained run")
