"""Docstrings of the public configs and entry points stay complete and true (issue 33).

- every public config dataclass documents each of its fields (inherited ones included) under ``Args:`` in the style
  of gsplat's ``strategy/default.py``: ``name (type): meaning. Default: value.``, with the field's annotation as the
  type and its default from the code (a computed default may add the expression in brackets:
  ``Default: 32768 (1 << 15).``); the section lists no field the class does not have;
- the docstring's first line stays a one-line summary: ``render3d.config_cli.add_config_args`` shows it as the
  ``--help`` group title;
- the main entry points have an ``Examples:`` block, and the doctests of their modules pass (examples that would
  train for long are marked ``# doctest: +SKIP``; the others train a few steps on tiny data).

:func:`args_problems` returns a list of problems, so the tests below also plant bad docstrings and require that they
are reported.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import doctest
import importlib
import inspect
import io
import math
import re
from typing import Any, Optional

import pytest

from render3d.config_cli import add_config_args, option

pytestmark = pytest.mark.usefixtures("one_thread")

#: ``(module, class)`` of every public config dataclass.
CONFIGS = [
    ("render3d.train", "TrainConfig"),
    ("render3d.splat.method", "SplatConfig"),
    ("render3d.nerf.method", "NerfSceneConfig"),
    ("render3d.nerf.method", "NerfConfig"),
    ("render3d.nerf.method", "VanillaNerfConfig"),
    ("render3d.zoo.train", "ZooTrainConfig"),
    ("render3d.zoo.base", "ModelConfig"),
    ("render3d.zoo.ae", "AEConfig"),
    ("render3d.zoo.vae", "VAEConfig"),
    ("render3d.zoo.vqvae", "VQVAEConfig"),
    ("render3d.zoo.pixelcnn", "PixelCNNConfig"),
    ("render3d.zoo.gan", "GANConfig"),
    ("render3d.zoo.diffusion", "DiffusionConfig"),
    ("render3d.process.pipeline", "ProcessConfig"),
]

#: ``(module, dotted name)`` of the entry points that carry an ``Examples:`` block.
ENTRY_POINTS = [
    ("render3d.train", "Trainer"),
    ("render3d.splat.method", "SplatMethod"),
    ("render3d.splat.render", "rasterize"),
    ("render3d.splat.model", "GaussianSplats.render"),
    ("render3d.nerf.method", "NerfMethod"),
    ("render3d.nerf.method", "VanillaNerfMethod"),
    ("render3d.zoo.base", "ZooModel"),
    ("render3d.zoo.base", "load"),
    ("render3d.zoo.train", "ZooTrainer"),
]

#: Modules whose doctests run: those holding the configs and the entry points.
DOCTEST_MODULES = sorted({module for module, _ in CONFIGS + ENTRY_POINTS})

ENTRY = re.compile(r"^(?P<name>\w+) \((?P<type>[^()]+)\): (?P<text>.+)$")
DEFAULT = re.compile(r"^(?P<meaning>.+?) Default: (?P<default>.+)\.$")


def resolve(module: str, name: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def args_section(doc: Optional[str]) -> dict[str, tuple[str, str]]:
    """``name -> (type, text)`` of each entry of the ``Args:`` section of a Google-style docstring.

    An entry starts one level (4 spaces) below ``Args:``; deeper lines continue it; a blank line or a line back at
    the section's level ends the section. Raises ValueError for a missing section or a malformed entry line.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    if "Args:" not in lines:
        raise ValueError("no Args: section")
    entries: dict[str, list[str]] = {}
    current: Optional[str] = None
    for line in lines[lines.index("Args:") + 1:]:
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent == 0:
            break
        if indent == 4:
            match = ENTRY.match(line.strip())
            if not match:
                raise ValueError(f"not an entry `name (type): meaning. Default: value.`: {line.strip()!r}")
            current = match["name"]
            entries[current] = [match["type"], match["text"]]
        else:
            assert current is not None
            entries[current][1] += " " + line.strip()
    return {name: (kind, text) for name, (kind, text) in entries.items()}


def field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def same_value(documented: Any, actual: Any) -> bool:
    if type(documented) is not type(actual):
        return False
    if isinstance(actual, float):
        return math.isclose(documented, actual, rel_tol=1e-9, abs_tol=0.0)
    return documented == actual


def args_problems(cls: type) -> list[str]:
    """What the ``Args:`` section of dataclass ``cls`` gets wrong: missing, unknown or malformed entries, types
    other than the annotations, defaults other than the code's."""
    try:
        entries = args_section(cls.__doc__)
    except ValueError as exc:
        return [f"{cls.__name__}: {exc}"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"{cls.__name__}.{name}: not documented under Args:" for name in fields if name not in entries]
    problems += [f"{cls.__name__}.{name}: documented under Args: but not a field" for name in entries if name not in fields]
    for name, (kind, text) in entries.items():
        if name not in fields:
            continue
        f = fields[name]
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if kind != annotation:
            problems.append(f"{cls.__name__}.{name}: documented as ({kind}), annotated {annotation}")
        match = DEFAULT.match(text)
        if not match or not match["meaning"].strip(" ."):
            problems.append(f"{cls.__name__}.{name}: not `meaning. Default: value.`: {text!r}")
            continue
        literal = re.sub(r"\s*\([^()]*\)$", "", match["default"])  # a computed default's expression, in brackets
        try:
            documented = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            problems.append(f"{cls.__name__}.{name}: default {match['default']!r} is not a Python literal")
            continue
        if not same_value(documented, field_default(f)):
            problems.append(f"{cls.__name__}.{name}: documented default {literal}, the code's is {field_default(f)!r}")
    return problems


def group_title(cls: type) -> str:
    """The ``--help`` group title ``add_config_args`` gives ``cls``."""
    parser = argparse.ArgumentParser()
    add_config_args(parser, cls)
    return parser._action_groups[-1].title


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("module,name", CONFIGS, ids=[name for _, name in CONFIGS])
def test_config_documents_every_field(module, name):
    assert args_problems(resolve(module, name)) == []


@pytest.mark.parametrize("module,name", CONFIGS, ids=[name for _, name in CONFIGS])
def test_config_summary_is_the_help_group_title(module, name):
    cls = resolve(module, name)
    summary = inspect.cleandoc(cls.__doc__).splitlines()
    assert len(summary) > 1 and summary[0].endswith(".") and not summary[1].strip(), "a one-line summary, then a blank line"
    assert group_title(cls) == summary[0]


@dataclasses.dataclass
class _Base:
    """Planted: a base class."""

    steps: int = option("steps", default=3)


@dataclasses.dataclass
class _Planted(_Base):
    """Planted: every kind of mistake.

    Args:
        rate (float): A rate. Default: 0.1.
        name (int): A name. Default: "a".
        size (int): A size. Default: 8.
        gone (int): Not a field any more. Default: 1.
        shift (int): No default given.
        scale (float): Computed. Default: 1.25e-4 (2.5e-3 / 20).
    """

    rate: float = option("a rate", default=0.2)
    name: str = option("a name", default="a")
    size: int = option("a size", default=8)
    shift: int = option("a shift", default=0)
    scale: float = option("a scale", default=2.5e-3 / 20)
    extra: Optional[str] = option("added later", default=None)


def test_planted_mistakes_are_reported():
    problems = "\n".join(args_problems(_Planted))
    for needle in ("_Planted.steps: not documented",  # an inherited field
                   "_Planted.extra: not documented",
                   "_Planted.gone: documented under Args: but not a field",
                   "_Planted.rate: documented default 0.1, the code's is 0.2",
                   "_Planted.name: documented as (int), annotated str",
                   "_Planted.shift: not `meaning. Default: value.`"):
        assert needle in problems, (needle, problems)
    assert "size" not in problems and "scale" not in problems, problems
    assert args_problems(_Base) == ["_Base: no Args: section"]


def test_parser_reads_continuation_lines_and_stops_at_the_next_section():
    doc = """Summary.

    Args:
        a (int): First line
            and its continuation. Default: 1.
        b (Optional[str]): B. Default: None.

    Examples:
        >>> 1
        1
    """
    assert args_section(doc) == {"a": ("int", "First line and its continuation. Default: 1."), "b": ("Optional[str]", "B. Default: None.")}
    with pytest.raises(ValueError, match="not an entry"):
        args_section("S.\n\n    Args:\n        a: no type. Default: 1.\n")


# ----------------------------------------------------------------------------- examples


@pytest.mark.parametrize("module,name", ENTRY_POINTS, ids=[name for _, name in ENTRY_POINTS])
def test_entry_point_has_examples(module, name):
    doc = inspect.getdoc(resolve(module, name)) or ""
    assert "Examples:" in doc and ">>> " in doc.split("Examples:", 1)[1]


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_doctests_pass(module):
    mod = importlib.import_module(module)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out = io.StringIO()
    for test in doctest.DocTestFinder().find(mod):
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
