"""The method contract: a method says what to compute for a batch; the Trainer owns the loop.

    batch ──► method.losses(step, batch) ──► StepOutput: {name: loss}, renders, stats
                                               │   + loss-term plug-ins (render3d.losses)
    Trainer: sum ─► pre_backward ─► backward ─► clip ─► optimiser steps ─► post_backward

One step of :class:`render3d.train.Trainer`, in order: ``before_step(step)`` (schedules,
occupancy grids), ``next_batch(step)``, ``losses(step, batch)``, every enabled loss
term's losses on the same batch and renders, ``pre_backward``, ``backward`` of the
weighted sum, gradient clipping (``--grad-clip``), a step of every optimiser in
``optimizers()`` (then ``zero_grad``), ``post_backward`` (gsplat's densification runs
here, after the optimiser step, as in gsplat's own trainer).

Adding a method
---------------
1. A folder ``my_method/`` with a config dataclass (fields made with
   :func:`render3d.config_cli.option` become ``--my-method.NAME`` options) and a class
   implementing :class:`Method` (inherit :class:`BaseMethod` for the no-op hooks), whose
   ``model`` implements :class:`render3d.protocol.SceneModel` plus whatever capabilities
   it has (:mod:`render3d.protocol`).
2. One registry entry, in the ``pyproject.toml`` of the package that holds it::

       [project.entry-points."render3d.methods"]
       my-method = "my_package.my_method.method:MyMethod"

   then ``pip install -e .``; ``render3d train --method my-method`` trains it, and
   ``eval``, ``render``, ``export`` and ``view`` work on its runs. ``tests/test_contract.py``
   trains a 30-line method this way.

The loss terms of :mod:`render3d.losses` work with any method whose ``losses`` returns
``outputs`` with ``rgb`` / ``depth`` / ``alpha`` shaped like the batch's targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.protocol import SceneModel
from render3d.registry import METHODS


@dataclass
class Batch:
    """One step's training data. Targets are ``[B, H, W, C]`` for image batches, ``[R, C]`` for ray batches.

    Attributes:
        rgb: target colours in [0, 1] (composited on ``background``).
        cameras: the views of an image batch (None for ray batches).
        indices: which training images the targets come from.
        alpha: target coverage in [0, 1] ``[..., 1]``, when the data has alpha.
        depth: target z-depth ``[..., 1]`` (0 where unknown), when the data has depth maps.
        mask: ``[..., 1]`` bool, True on the object / valid pixels, when the data has masks.
        background: ``[3]`` (or per ray ``[R, 3]``, per view ``[B, 3]``) colour the targets are composited on.
        origins, directions: ``[R, 3]`` world rays of a ray batch (unit directions).
        z_scale: ``[R, 1]`` cosine between each ray and its camera's axis (distance x z_scale = z-depth).
        jitter: ``[R, 1]`` uniform numbers for stratified sampling along each ray (drawn with the batch,
            so a distributed run samples as a single process would).
    """

    rgb: Tensor
    cameras: Optional[Cameras] = None
    indices: Optional[Tensor] = None
    alpha: Optional[Tensor] = None
    depth: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    background: Optional[Tensor] = None
    origins: Optional[Tensor] = None
    directions: Optional[Tensor] = None
    z_scale: Optional[Tensor] = None
    jitter: Optional[Tensor] = None


@dataclass
class StepOutput:
    """What a method computed for a batch.

    Attributes:
        losses: named scalar losses; the Trainer backpropagates their sum.
        outputs: differentiable renders shaped like the batch's targets: ``rgb [..., 3]``,
            ``depth [..., 1]`` (z-depth), ``alpha [..., 1]``.
        stats: numbers for the progress bar and the viewer.
        state: anything the method's own hooks need later in the step (gsplat's ``info``).
    """

    losses: dict[str, Tensor]
    outputs: dict[str, Tensor]
    stats: dict[str, float] = field(default_factory=dict)
    state: Any = None


@runtime_checkable
class Method(Protocol):
    """A trainable scene representation (see the module docstring for the step order)."""

    name: ClassVar[str]
    description: ClassVar[str]
    config_type: ClassVar[type]
    model: SceneModel

    @classmethod
    def create(cls, config: Any, scene: Any, backend: str, device: torch.device, total_steps: int, seed: int,
               batch_size: int = 0) -> "Method":
        """A fresh method for ``scene`` (a :class:`render3d.datasets.SceneData`); ``batch_size`` is the
        ``--batch-size`` per step and process (0: the method's default). In a distributed run each
        rank draws the global batch and keeps its share (see :mod:`render3d.batches`)."""
        ...

    @classmethod
    def load_model(cls, config: Any, state: dict, backend: str, device: torch.device) -> SceneModel:
        """A renderable model from :meth:`state_dict` output (no optimisers)."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser the Trainer steps after backward."""
        ...

    def before_step(self, step: int) -> None:
        """Schedules and bookkeeping before the batch is drawn (learning rates, occupancy grids)."""
        ...

    def next_batch(self, step: int) -> Batch:
        """The training data of ``step`` (drawn from the method's own seeded generator)."""
        ...

    def losses(self, step: int, batch: Batch) -> StepOutput:
        """Render ``batch`` with gradients and return the named losses."""
        ...

    def render_views(self, cameras: Cameras) -> dict[str, Tensor]:
        """Differentiable renders of extra views for loss terms: ``rgb [C,H,W,3]``, ``depth``, ``alpha [C,H,W,1]``."""
        ...

    def pre_backward(self, step: int, out: StepOutput) -> None: ...

    def post_backward(self, step: int, out: StepOutput) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class BaseMethod:
    """No-op defaults for the optional hooks of :class:`Method`."""

    def before_step(self, step: int) -> None:
        pass

    def pre_backward(self, step: int, out: StepOutput) -> None:
        pass

    def post_backward(self, step: int, out: StepOutput) -> None:
        pass

    def render_views(self, cameras: Cameras) -> dict[str, Tensor]:
        raise NotImplementedError(f"the {getattr(self, 'name', type(self).__name__)} method cannot render extra views for loss terms")

    def stats(self) -> dict[str, float]:
        return {}

    def refined_train_cameras(self) -> Optional[Cameras]:
        """The training cameras with the poses training refined (``--splat.pose-opt``), or None when it refines none."""
        return None


def get_method(name: str) -> Any:
    """The method class registered as ``name``, or a one-line error listing the methods."""
    return METHODS.get(name)


def model_from_checkpoint(ckpt: dict, backend: str, device: Any) -> SceneModel:
    """A renderable scene model from a loaded Trainer checkpoint."""
    from render3d.errors import Render3DError

    method = get_method(ckpt["method"])
    try:
        config = method.config_type(**ckpt["method_config"])
    except TypeError as exc:
        raise Render3DError(f"the checkpoint's {ckpt['method']} options do not match this version of render3d ({exc})") from None
    return method.load_model(config, ckpt["method_state"], backend, device)
