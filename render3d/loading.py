"""One verb for every trained model: :func:`load` reads a run folder or file and returns its model.

Each trainer writes its own kind of run folder and keeps its own loader; ``load`` picks the
loader from what the folder or file holds:

========================================  ==========================  =====================================
what ``path`` holds                       loader                      returns
========================================  ==========================  =====================================
``checkpoint.pt`` (``render3d train``),   :func:`render3d.runs.       the scene model (``render(cameras)``)
a 3DGS ``.ply`` or a ``.splat`` file      load_run`
``model.pt`` of ``render3d zoo train``    :func:`render3d.zoo.load`   a :class:`~render3d.zoo.ZooModel`
``model.pt`` of ``video tokenizer train`` :func:`render3d.video.      a :class:`~render3d.video.tokenizer.
                                          tokenizer.load_tokenizer`   VideoTokenizer`
``model.pt`` of ``render3d video train``  :func:`render3d.video.      a :class:`~render3d.video.generate.
                                          generate.load_video_model`  VideoModel` (world model + tokenizer)
========================================  ==========================  =====================================

Checkpoints are read weights-only, as everywhere: no code in a file ever runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from render3d.errors import Render3DError


def checkpoint_kind(path: str | Path) -> str:
    """What the run folder or file at ``path`` holds: ``scene``, ``zoo``, ``video-tokenizer`` or ``video-world-model``.

    Raises:
        Render3DError: ``path`` is missing or holds no render3d model.
    """
    from render3d.checkpoints import load_weights
    from render3d.runs import SPLAT_SUFFIXES
    from render3d.train import CHECKPOINT_NAME
    from render3d.video.checkpoint import CHECKPOINT_NAME as MODEL_NAME  # the zoo's and the video models' file

    p = Path(path).expanduser()
    if p.is_dir():
        if (p / CHECKPOINT_NAME).is_file():
            return "scene"
        p = p / MODEL_NAME
    elif p.suffix.lower() in SPLAT_SUFFIXES and p.is_file():
        return "scene"
    if not p.is_file():
        raise Render3DError(f"no model at {path}: pass a run folder of render3d train, zoo train, video tokenizer train "
                            "or video train, its checkpoint file, a 3DGS .ply or a .splat file")
    data = load_weights(p)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind in ("zoo", "video-tokenizer", "video-world-model"):
        return str(kind)
    if isinstance(data, dict) and "method" in data:
        return "scene"
    raise Render3DError(f"{p} is not a render3d checkpoint: pass a run folder or the checkpoint file a trainer wrote")


def load(path: str | Path, backend: str = "auto") -> Any:
    """The trained model in the run folder or file ``path``, ready to use (see the module docstring for each kind).

    Args:
        path: a run folder, its checkpoint file, a 3DGS ``.ply`` or a ``.splat`` file.
        backend: for scene models, ``auto``, ``cuda`` or ``torch`` (the others load on the CPU).

    Raises:
        Render3DError: ``path`` is missing, damaged or holds no render3d model (one line).

    Examples:
        >>> import render3d
        >>> scene = render3d.load("runs/default-scene-splat-20260101-120000")  # doctest: +SKIP
        >>> scene.render(cameras)  # doctest: +SKIP
        >>> render3d.load("runs/zoo-fashion-mnist-diffusion-20260101-120000").sample(16).shape  # doctest: +SKIP
        torch.Size([16, 1, 28, 28])
    """
    kind = checkpoint_kind(path)
    if kind == "scene":
        from render3d.runs import load_run

        return load_run(path, backend=backend, dataset="skip").model
    if kind == "zoo":
        from render3d.zoo import load as load_zoo

        return load_zoo(path)
    if kind == "video-tokenizer":
        from render3d.video.tokenizer import load_tokenizer

        return load_tokenizer(path)
    from render3d.video.generate import load_video_model

    return load_video_model(path)
