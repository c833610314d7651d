"""The one place that decides which compute backend runs.

``cuda``: gsplat's rasteriser and nerfacc's CUDA kernels on an NVIDIA GPU.
``torch``: our pure-PyTorch reference implementations, which run anywhere (CPU included).
``auto`` picks ``cuda`` when a CUDA device is present, else ``torch``.
"""

from __future__ import annotations

import torch

from render3d.errors import Render3DError

BACKENDS = ("auto", "cuda", "torch")


def cuda_available() -> bool:
    """True when PyTorch sees a CUDA device."""
    return torch.cuda.is_available()


def resolve_backend(name: str) -> str:
    """Turn ``auto`` / ``cuda`` / ``torch`` into the backend that will actually run."""
    if name not in BACKENDS:
        raise Render3DError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "cuda" if cuda_available() else "torch"
    if name == "cuda" and not cuda_available():
        raise Render3DError("--backend cuda was asked for but PyTorch sees no CUDA device: use --backend torch (or auto)")
    return name


def device_for(backend: str) -> torch.device:
    """The torch device a resolved backend computes on (``torch`` uses CUDA too when present)."""
    if backend == "cuda":
        return torch.device("cuda")
    return torch.device("cpu")
