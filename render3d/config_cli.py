"""Generate argparse options from config dataclasses, so the CLI and the Python API never drift.

Each dataclass field becomes ``--name`` (or ``--prefix.name``), typed from its annotation,
with the help text from ``field(metadata={"help": ...})`` and the default shown.
Booleans get ``--name`` / ``--no-name``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Optional


def option(help: str, resumable: bool = False, **kwargs: Any) -> Any:
    """A dataclass field carrying its CLI help text: ``steps: int = option("how many", default=3)``.

    ``resumable``: a ``--resume`` may give the option again to change it (see :func:`resume_overrides`);
    every other option of a resumed run comes from its checkpoint.
    """
    return dataclasses.field(metadata={"help": help, "resumable": resumable}, **kwargs)


def resume_overrides(cls: type, args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """The ``resumable`` options of dataclass ``cls`` that the user typed in ``argv``, with their values from ``args``."""
    typed = explicit_options(list(argv))
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.metadata.get("resumable") and f.name in typed}


def _base_type(annotation: Any) -> type:
    """``Optional[int]`` -> int, ``'bool'`` -> bool, etc."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Optional": Optional, "typing": typing})  # annotations are ours
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return annotation


def add_config_args(
    parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: tuple[str, ...] = (), title: Optional[str] = None
) -> None:
    """Add one option per field of dataclass ``cls`` to ``parser``."""
    group = parser.add_argument_group(title or (cls.__doc__ or cls.__name__).strip().splitlines()[0])
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        name = f"--{prefix}{f.name.replace('_', '-')}"
        dest = f"{prefix.replace('.', '__')}{f.name}"
        kind = _base_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            group.add_argument(name, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            shown = "" if default is None else f" (default: {default})"
            group.add_argument(name, dest=dest, type=kind, default=default, metavar=kind.__name__.upper(), help=help_text + shown)


def config_from_args(args: argparse.Namespace, cls: type, prefix: str = "", **overrides: Any) -> Any:
    """Build a ``cls`` instance from parsed ``args`` (fields missing from ``args`` keep defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix.replace('.', '__')}{f.name}"
        if hasattr(args, dest):
            values[f.name] = getattr(args, dest)
    values.update(overrides)
    return cls(**values)


def explicit_options(argv: list[str]) -> set[str]:
    """Names of the ``--options`` the user actually typed (to tell them from defaults)."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
