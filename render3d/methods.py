"""The method registry: one entry per trainable scene representation.

A method module provides a config dataclass, a class with ``create`` / ``train_step`` /
``state_dict`` / ``load_state_dict`` / ``stats`` and a ``model`` implementing
:class:`render3d.protocol.SceneModel`, and ``load_model(state, backend, device)`` that
rebuilds a renderable model from a checkpoint. Nothing outside the method's folder and
this table needs to change when a method is added.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from render3d.errors import Render3DError


@dataclass(frozen=True)
class MethodEntry:
    """Where a method lives: ``module`` with ``method_class``, ``config_class`` and ``load_model``."""

    name: str
    module: str
    method_class: str
    config_class: str
    description: str

    def load(self) -> Any:
        return importlib.import_module(self.module)

    def config_type(self) -> type:
        return getattr(self.load(), self.config_class)

    def method_type(self) -> type:
        return getattr(self.load(), self.method_class)


METHODS: dict[str, MethodEntry] = {
    "splat": MethodEntry("splat", "render3d.splat.method", "SplatMethod", "SplatConfig", "3D Gaussian Splatting"),
    "nerf": MethodEntry("nerf", "render3d.nerf.method", "NerfMethod", "NerfConfig", "hash-grid NeRF (Instant-NGP style)"),
    "vanilla-nerf": MethodEntry("vanilla-nerf", "render3d.nerf.method", "VanillaNerfMethod", "VanillaNerfConfig", "the original NeRF MLP"),
}


def get_method(name: str) -> MethodEntry:
    """The registry entry for ``name``, or a one-line error listing the methods."""
    if name not in METHODS:
        raise Render3DError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


def model_from_checkpoint(ckpt: dict, backend: str, device: Any) -> Any:
    """A renderable scene model (``render(cameras, mode)``) from a loaded checkpoint."""
    return get_method(ckpt["method"]).load().load_model(ckpt["method_state"], backend, device)
