"""Public names of a package, imported from their modules on first use (PEP 562).

``from render3d.splat import GaussianSplats`` then works without ``render3d.splat`` importing
every module up front (and without import cycles between a package and its modules)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for ``package``: each name in ``exports`` comes from the relative module it maps to.

    Examples:
        >>> __all__, __getattr__ = lazy_exports(__name__, {"GaussianSplats": ".model"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    return sorted(exports), __getattr__
