"""What a prior may learn from: random patches of the run's own training views (and, if asked,
of the bundled default scene), never of held-out views; the sources are recorded."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from render3d.errors import Render3DError
from render3d.zoo.data import ImageData


def random_patches(images: Tensor, size: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` random ``size`` x ``size`` crops of each image ``[N, H, W, 3]`` uint8 -> ``[N * count, 3, S, S]``."""
    n, h, w = images.shape[:3]
    if h < size or w < size:
        raise Render3DError(f"the images are {w}x{h}, smaller than the prior's {size}x{size} patches: use --size {min(h, w) // 4 * 4}")
    views = images.permute(0, 3, 1, 2)
    ys = torch.randint(0, h - size + 1, (n, count), generator=generator)
    xs = torch.randint(0, w - size + 1, (n, count), generator=generator)
    return torch.stack([views[i, :, y:y + size, x:x + size] for i in range(n) for y, x in zip(ys[i].tolist(), xs[i].tolist())])


def prior_data(scene: Any, size: int, per_view: int, include_default_scene: bool, seed: int = 0) -> tuple[ImageData, list[str]]:
    """Training patches for a prior, held-out patches (other crops of the same views) and the files they came from."""
    generator = torch.Generator().manual_seed(seed)
    root = scene.root
    sources = [str(root / name) if root is not None else name for name in scene.train.names]
    parts, held = [random_patches(scene.train.images, size, per_view, generator)], [random_patches(scene.train.images, size, 8, generator)]
    if include_default_scene:
        from render3d.datasets import load_scene
        from render3d.datasets.synthetic import default_scene_dir

        default = load_scene(default_scene_dir())
        parts.append(random_patches(default.train.images, size, max(1, per_view // 4), generator))
        sources += [str(default.root / name) for name in default.train.names]
    data = ImageData(
        name=f"prior-{root.name if root is not None else 'scene'}",
        train=torch.cat(parts),
        test=torch.cat(held),
        note=(f"{size}x{size} patches of {len(scene.train)} training views" + (" and of the default scene's training views" if include_default_scene else "")
              + "; no held-out view of the scene was read. No labels."),
        augment=True,
    )
    return data, sources
