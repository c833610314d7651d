"""The tokenizer's fixed first stage: a two-level 3D Haar wavelet patcher (no learned weights).

As in NVIDIA's Cosmos tokenizer, the clip is first split into wavelet sub-bands, which
shrinks time and space by 4 each and moves the detail into channels: ``[B, 3, T, H, W]``
becomes ``[B, 3 * 64, 1 + (T - 1) / 4, H / 4, W / 4]``. To keep the first frame on its own
(so that an image is a one-frame video and latent frame 0 depends on frame 0 only), three
copies of the first frame are put in front: the first group of four frames is the first
frame alone, then frames 1-4, 5-8, ... The transform is exactly invertible.

The Haar pair uses averages and half differences (``(a + b) / 2``, ``(a - b) / 2``), so
every band of a signal in ``[-1, 1]`` stays in ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render3d.errors import Render3DError

LEVELS = 2
FACTOR = 2**LEVELS  # down-sampling of time, height and width
BANDS = 8**LEVELS  # channels per input channel


def check_frames(frames: int) -> None:
    """A one-line error unless ``frames`` is 1 + 4k (what the causal grouping needs)."""
    if frames < 1 or (frames - 1) % FACTOR:
        raise Render3DError(f"a clip needs 1 + {FACTOR}k frames (1, 5, 9, 13, 17, ...), not {frames}")


def _haar_level(x: Tensor) -> Tensor:
    """One level over time, height and width: ``[B, C, T, H, W]`` -> ``[B, 8C, T/2, H/2, W/2]``."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
    for axis in (3, 5, 7):  # split each pair into (average, half difference)
        a, d = x.select(axis, 0), x.select(axis, 1)
        x = torch.stack([(a + d) / 2, (a - d) / 2], dim=axis)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * 8, t // 2, h // 2, w // 2)


def _inverse_haar_level(x: Tensor) -> Tensor:
    """The inverse of :func:`_haar_level`."""
    b, c8, t, h, w = x.shape
    x = x.reshape(b, c8 // 8, 2, 2, 2, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)  # [B, C, t, 2, h, 2, w, 2]
    for axis in (3, 5, 7):
        low, high = x.select(axis, 0), x.select(axis, 1)
        x = torch.stack([low + high, low - high], dim=axis)
    return x.reshape(b, c8 // 8, t * 2, h * 2, w * 2)


def haar_encode(video: Tensor) -> Tensor:
    """``[B, C, T, H, W]`` (T = 1 + 4k, H and W divisible by 4) -> wavelet bands ``[B, 64C, 1 + k, H/4, W/4]``."""
    check_frames(video.shape[2])
    if video.shape[3] % FACTOR or video.shape[4] % FACTOR:
        raise Render3DError(f"frame size {video.shape[4]}x{video.shape[3]} must be divisible by {FACTOR}")
    x = torch.cat([video[:, :, :1].expand(-1, -1, FACTOR - 1, -1, -1), video], dim=2)
    for _ in range(LEVELS):
        x = _haar_level(x)
    return x


def haar_decode(bands: Tensor) -> Tensor:
    """Wavelet bands ``[B, 64C, K, h, w]`` -> the video ``[B, C, 1 + 4(K - 1), 4h, 4w]`` (the padding dropped)."""
    x = bands
    for _ in range(LEVELS):
        x = _inverse_haar_level(x)
    return x[:, :, FACTOR - 1:]
