"""Saving and loading the video models: one ``model.pt`` per run folder, tensors and plain values only.

A checkpoint is ``{"version", "kind", "config", "state", "optimizer", "info", ...}``; ``kind``
is ``video-tokenizer`` or ``video-world-model``. Files are written atomically and read
weights-only (:mod:`render3d.checkpoints`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from render3d.errors import Render3DError

CHECKPOINT_NAME = "model.pt"
VERSION = 1
KINDS = {"video-tokenizer": "render3d video tokenizer train", "video-world-model": "render3d video train"}


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself when it is a file, else ``path/model.pt``."""
    p = Path(path).expanduser()
    return p / CHECKPOINT_NAME if p.is_dir() else p


def read_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """A video checkpoint (of ``kind`` when given) from a run folder or ``.pt`` file, with one-line errors."""
    from render3d.checkpoints import load_tagged, require_keys

    file = checkpoint_file(path)
    wanted = kind or "video-tokenizer or video-world-model"
    if not file.is_file():
        hint = KINDS.get(kind or "", "render3d video tokenizer train / render3d video train")
        raise Render3DError(f"no video model at {file}: pass a run folder of `{hint}` or its {CHECKPOINT_NAME}")
    ckpt = load_tagged(file, KINDS, VERSION, "video checkpoint")
    if kind is not None and ckpt["kind"] != kind:
        raise Render3DError(f"{file} is a {ckpt['kind']}, not a {wanted}: pass the run folder of `{KINDS[kind]}`")
    return require_keys(ckpt, ("config", "state"), file, what="video checkpoint")


def checkpoint_kind(path: str | Path) -> str:
    """``video-tokenizer`` or ``video-world-model`` for the checkpoint at ``path``."""
    return str(read_checkpoint(path)["kind"])
