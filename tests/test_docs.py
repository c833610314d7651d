"""The user docs (README.md, docs/*.md) and CHANGELOG.md stay true and readable.

- no development-log wording ("this stop", "the last stop", ...) and no bare commit hashes;
- no paths outside the repository (``../shared``, ``../x``, ``/work/``) in commands;
- every ``render3d ...`` command in a fenced code block names an existing subcommand (and
  sub-subcommand, e.g. ``data process``, ``video tokenizer train``), uses only options that
  subcommand's ``--help`` lists, and parses; the parser is built in-process, plug-ins included;
- relative links point at files (and headings) that exist;
- README.md has at most 200 lines.

Each checker returns a list of problems, so the tests below also plant bad examples in each
one and require that they are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"
USER_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
ALL_DOCS = [*USER_DOCS, CHANGELOG]
README_MAX_LINES = 200

# development-log wording that has no place in a user's guide
STOP_WORDS = re.compile(r"\b(?:this|last|earlier|previous)\s+stops?\b", re.IGNORECASE)
# 7-40 hex characters standing alone, with at least one digit and one letter: a commit hash
HASH = re.compile(r"(?<![\w/.\-])(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,40}(?![\w/\-])")
# paths that leave the repository
OUTSIDE = re.compile(r"(?:^|[\s=\"'(`])(?:\.\./|/work/)")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PROMPT = re.compile(r"^\s*\$\s+")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ----------------------------------------------------------------------------- markdown


def code_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """``(first line number, language, lines)`` of every fenced code block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language, start, body = opening.group(2), opening.group(3).lower(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        yield start + 1, language, body
        i += 1


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks."""
    inside: Optional[str] = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if inside is None and opening:
            inside = opening.group(2)
        elif inside is not None and line.strip().startswith(inside):
            inside = None
        elif inside is None:
            yield number, line


def joined_commands(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Shell lines with ``\\`` continuations joined and a ``$ `` prompt removed: ``(line number, command)``."""
    pending, start = "", first
    for offset, line in enumerate(lines):
        if not pending:
            start = first + offset
            line = PROMPT.sub("", line, count=1)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


# ----------------------------------------------------------------------------- the checkers


def wording_problems(text: str, name: str, stop_words: bool = True) -> list[str]:
    """Development-log stop words (unless ``stop_words`` is off) and bare commit hashes, anywhere in ``text``."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if stop_words:
            problems += [f"{name}:{number}: development-log wording {m.group(0)!r}" for m in STOP_WORDS.finditer(line)]
        problems += [f"{name}:{number}: bare commit hash {m.group(0)!r}" for m in HASH.finditer(line)]
    return problems


def outside_path_problems(text: str, name: str) -> list[str]:
    """Paths outside the repository in fenced code or inline code (the commands a reader copies)."""
    snippets: list[tuple[int, str]] = []
    for first, _language, body in code_blocks(text):
        snippets += [(first + k, line) for k, line in enumerate(body)]
    for number, line in prose_lines(text):
        snippets += [(number, m.group(1)) for m in INLINE_CODE.finditer(line)]
    return [f"{name}:{number}: a path outside the repository in {snippet.strip()!r}"
            for number, snippet in snippets if OUTSIDE.search(snippet)]


def render3d_invocations(command: str) -> Iterator[list[str]]:
    """The arguments after ``render3d`` in each ``render3d ...`` of a shell command (also
    ``python -m render3d`` and ``torchrun ... -m render3d``), comments dropped."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote: not a shell line we can read
        return
    segment: list[str] = []
    for token in [*tokens, "&&"]:
        if token in ("&&", "||", ";", "|"):
            for i, word in enumerate(segment):
                if word == "render3d" and (i == 0 or segment[i - 1] == "-m"):
                    yield segment[i + 1:]
                    break
            segment = []
        else:
            segment.append(token)


def subparsers_of(parser: argparse.ArgumentParser) -> Optional[dict[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def listed_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings ``--help`` lists for ``parser``."""
    return {option for action in parser._actions if action.help is not argparse.SUPPRESS for option in action.option_strings}


def command_problems(args: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Why ``render3d ARGS`` is not a command of ``parser``: an unknown (sub)subcommand, an option
    its ``--help`` does not list, or an argparse error; empty when it parses."""
    node, path = parser, ["render3d"]
    rest = list(args)
    while (choices := subparsers_of(node)) is not None:
        if not rest or rest[0].startswith("-"):
            if not any(a in ("-h", "--help") for a in rest):
                return [f"'{' '.join(path)}' needs one of: {', '.join(sorted(choices))}"]
            break
        if rest[0] not in choices:
            return [f"'{' '.join(path)}' has no subcommand {rest[0]!r} (choices: {', '.join(sorted(choices))})"]
        node = choices[rest[0]]
        path.append(rest.pop(0))
    known = listed_options(node)
    problems = []
    for token in rest:
        if token == "--" or not token.startswith("-") or re.fullmatch(r"-\d.*", token):
            continue  # a positional, a placeholder, or a negative number
        option = token.split("=", 1)[0]
        if option not in known:
            problems.append(f"'{' '.join(path)}' has no option {option} (see '{' '.join(path)} --help')")
    if problems or any(a in ("-h", "--help") for a in args):
        return problems
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as stop:
        if stop.code:
            lines = stderr.getvalue().strip().splitlines()
            return [f"does not parse: {lines[-1] if lines else stop.code}"]
    return []


def docs_command_problems(text: str, name: str, parser: argparse.ArgumentParser) -> tuple[list[str], int]:
    """Problems of every ``render3d`` command in the fenced code blocks of ``text``, and how many were checked."""
    problems, checked = [], 0
    for first, language, body in code_blocks(text):
        if language in ("python", "py", "json", "toml", "yaml"):
            continue
        for number, command in joined_commands(body, first):
            for args in render3d_invocations(command):
                checked += 1
                problems += [f"{name}:{number}: {command.strip()!r}: {p}" for p in command_problems(args, parser)]
    return problems, checked


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of the markdown headings in ``text``."""
    anchors = set()
    for _number, line in prose_lines(text):
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def link_problems(path: Path, name: Optional[str] = None) -> list[str]:
    """Relative links of ``path`` whose file, or heading, does not exist (``name``: how to call ``path``)."""
    name = name or rel(path)
    problems = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{name}:{number}: link to a missing file {target}")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"{name}:{number}: link to a missing heading {target}")
    return problems


@functools.lru_cache(maxsize=1)
def cli_parser() -> argparse.ArgumentParser:
    """The ``render3d`` parser as the command builds it, plug-in commands and options included."""
    from render3d.cli import build_parser

    return build_parser()


# ----------------------------------------------------------------------------- the docs


def test_the_docs_exist():
    names = {p.name for p in USER_DOCS}
    expected = {"training.md", "datasets.md", "rendering-and-export.md", "camera-paths.md", "viewer.md", "priors.md",
                "distributed.md", "python-api.md", "extending.md", "zoo.md", "video.md", "benchmarks.md"}
    assert expected <= names, f"missing docs: {sorted(expected - names)}"
    assert CHANGELOG.is_file()


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; keep it to {README_MAX_LINES} and move detail to docs/"


def test_readme_keeps_the_ci_test_command():
    test_command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    blocks = ["\n".join(body) for _first, _language, body in code_blocks(README.read_text(encoding="utf-8"))]
    assert test_command.strip() in blocks, f".ci/run's command {test_command!r} is not a code block of README.md"


@pytest.mark.parametrize("path", ALL_DOCS, ids=rel)
def test_no_development_log_wording_or_commit_hashes(path):
    problems = wording_problems(path.read_text(encoding="utf-8"), rel(path), stop_words=path != CHANGELOG)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ALL_DOCS, ids=rel)
def test_commands_stay_inside_the_repository(path):
    problems = outside_path_problems(path.read_text(encoding="utf-8"), rel(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ALL_DOCS, ids=rel)
def test_links_resolve(path):
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


def test_every_render3d_command_in_the_docs_parses():
    problems, checked = [], 0
    for path in ALL_DOCS:
        found, count = docs_command_problems(path.read_text(encoding="utf-8"), rel(path), cli_parser())
        problems += found
        checked += count
    assert checked >= 50, f"only {checked} render3d commands found in the docs: is the code-block reader broken?"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- the checkers catch planted mistakes


def test_planted_development_log_wording_and_hashes_are_caught():
    text = "The kernels of the last stop were slower.\nSee commit 5a28572 and e2458d1f for the earlier stops.\n"
    problems = wording_problems(text, "x.md")
    assert sum("wording" in p for p in problems) == 2 and sum("hash" in p for p in problems) == 2
    assert all("hash" in p for p in wording_problems(text, "x.md", stop_words=False))
    clean = "2048x2048 matmul, 1e-3, 300000 Gaussians, deadbeef, c10d, 2026-12-07, render3d/a1b2c3d4.py, --seed 1234567"
    assert wording_problems(clean, "x.md") == []


def test_planted_outside_paths_are_caught():
    text = "```bash\nrender3d train ../shared/data/fern\nrender3d view /work/main/runs/x\n```\nUse `render3d info ../x`.\n"
    assert len(outside_path_problems(text, "x.md")) == 3
    assert outside_path_problems("See [the report](../bench/results/zoo/faces/report.md).\n", "x.md") == []


def test_planted_bad_commands_are_caught():
    parser = cli_parser()
    bad = """
```bash
render3d train --no-such-option 3        # an unknown option
render3d trian DATA                      # an unknown subcommand
render3d data convert photos/ --out x    # an unknown sub-subcommand
render3d video tokenizer fit runs/clips  # an unknown sub-sub-subcommand
render3d train --splat.no-such 1         # an unknown dotted option
$ render3d zoo train vae --data fashion-mnist \\
    --budgte 60                          # a misspelt option on a continuation line
render3d export RUN                      # a required option missing
render3d train --ste 100                 # an abbreviation argparse would accept, --help does not list
pip install -e . && render3d eval RUN --split nowhere   # a bad choice, after &&
torchrun --nproc-per-node 2 -m render3d train DATA --nproc-per-node 2
```
"""
    problems, checked = docs_command_problems(bad, "x.md", parser)
    assert checked == 10 and len(problems) == 10, "\n".join(problems)
    good = """
```bash
$ render3d train DATA --steps 7000 --splat.appearance exposure --loss depth:0.1,mask --loss.depth.start 0.2
render3d data process PHOTOS/ my_video.mp4 --out OUT --overwrite --threads -1   # a comment --not-an-option
render3d video tokenizer train runs/clips --kind discrete \\
    --budget 1200 --out runs/tok
render3d zoo sample RUN -n 64 --out grid.png
torchrun --nproc-per-node 2 -m render3d train DATA --viewer
render3d train --help
```
```python
render3d = "not a command"
```
"""
    problems, checked = docs_command_problems(good, "x.md", parser)
    assert checked == 6 and problems == [], "\n".join(problems)


def test_planted_broken_links_are_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "a.md"
    (tmp_path / "docs" / "b.md").write_text("# Title\n\n## Some heading\n", encoding="utf-8")
    page.write_text("[ok](b.md#some-heading) [file](missing.md) [heading](b.md#nowhere) [web](https://example.com)\n",
                    encoding="utf-8")
    problems = link_problems(page, "a.md")
    assert problems == ["a.md:1: link to a missing file missing.md", "a.md:1: link to a missing heading b.md#nowhere"]
