"""One plug-in mechanism for methods, loss terms, zoo models and CLI commands: Python entry points.

A package (ours or a third party's) declares what it adds in its ``pyproject.toml``::

    [project.entry-points."render3d.methods"]
    my-method = "my_package.method:MyMethod"

and ``render3d`` finds it through :mod:`importlib.metadata` once the package is installed:
no file of ours changes. The groups:

==========================  ==========================================================
``render3d.methods``        a scene method class (see :mod:`render3d.methods`)
``render3d.loss_terms``     a loss-term class (see :mod:`render3d.losses`)
``render3d.zoo_models``     a 2D generative model class (see :mod:`render3d.zoo.base`)
``render3d.commands``       a function ``add_parser(subparsers)`` adding a CLI command
==========================  ==========================================================
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from render3d.errors import Render3DError

T = TypeVar("T")


def _source_checkout_entry_points(group: str) -> list[EntryPoint]:
    """Our own entry points read from ``pyproject.toml`` beside the package, when render3d runs from a
    source folder that was never installed (e.g. on ``PYTHONPATH``): installed plug-ins still come from
    the installed metadata."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, distribution
    from pathlib import Path

    try:
        distribution("render3d")
        return []  # installed: its metadata already lists these
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return []
    table = tomllib.loads(pyproject.read_text()).get("project", {}).get("entry-points", {}).get(group, {})
    return [EntryPoint(name=name, value=value, group=group) for name, value in table.items()]


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[EntryPoint, ...]:
    found = list(entry_points(group=group)) + _source_checkout_entry_points(group)
    unique = {ep.name: ep for ep in reversed(found)}  # the first of a name wins
    return tuple(sorted(unique.values(), key=lambda ep: ep.name))


class Registry(Generic[T]):
    """The plug-ins of one entry-point ``group``; ``kind`` names them in error messages."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._loaded: dict[str, Any] = {}
        self._warned: set[str] = set()  # plug-ins that failed to load, already reported by items()

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return [ep.name for ep in _entry_points(self.group)]

    def get(self, name: str) -> T:
        """The object registered as ``name``; a one-line error listing the choices, or naming the
        plug-in and its import error when it does not load."""
        if name not in self._loaded:
            found = [ep for ep in _entry_points(self.group) if ep.name == name]
            if not found:
                choices = ", ".join(self.names()) or "none are installed (reinstall render3d: pip install -e .)"
                raise Render3DError(f"unknown {self.kind} {name!r}: use one of {choices}")
            try:
                self._loaded[name] = found[0].load()
            except Exception as exc:  # a broken or outdated plug-in: its own import error, in one line
                raise Render3DError(f"the {self.kind} {name!r} ({found[0].value}) does not load ({type(exc).__name__}: {exc}): "
                                    "reinstall or remove the package that provides it") from None
        return self._loaded[name]

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` for every plug-in that loads; one that does not is left out, with a warning
        (once), so a broken third-party plug-in does not take every command down with it."""
        loaded = []
        for name in self.names():
            try:
                loaded.append((name, self.get(name)))
            except Render3DError as error:
                if name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(str(error), RuntimeWarning, stacklevel=2)
        return loaded

    def __contains__(self, name: object) -> bool:
        return name in self.names()


def reload_plugins() -> None:
    """Forget what was found, so packages installed (or put on ``sys.path``) since are seen."""
    _entry_points.cache_clear()
    for registry in (METHODS, LOSS_TERMS, ZOO_MODELS, COMMANDS):
        registry._loaded.clear()
        registry._warned.clear()


METHODS: Registry[Any] = Registry("render3d.methods", "method")
LOSS_TERMS: Registry[Any] = Registry("render3d.loss_terms", "loss term")
ZOO_MODELS: Registry[Any] = Registry("render3d.zoo_models", "zoo model")
COMMANDS: Registry[Any] = Registry("render3d.commands", "command")
