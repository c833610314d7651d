"""Run folders, one policy for every trainer (3D, zoo, video): a new one is claimed safely, an
existing run is refused unless the command resumes it or asks to overwrite it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from render3d.errors import Render3DError


def default_run_path(*parts: str) -> Path:
    """Where a run without ``--out`` goes: ``runs/PART-PART-...-YYYYmmdd-HHMMSS`` (``-N`` is added when it is taken,
    see :func:`claim_new_run_dir`)."""
    return Path("runs") / "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])


def refuse_existing_run(out: Path, checkpoint_name: str, *, resuming: bool, overwrite: bool, what: str = "run") -> None:
    """Raise a one-line Render3DError when ``out`` already holds ``checkpoint_name`` and the caller neither resumes nor overwrites."""
    if not (resuming or overwrite) and (Path(out) / checkpoint_name).exists():
        raise Render3DError(f"{out} already holds a {what}: continue it with --resume {out}, replace it with --overwrite, "
                            "or choose another --out")


def claim_new_run_dir(base: Path) -> Path:
    """Create and return ``base`` or the first free ``base-N``; creating it is the claim, so two runs never share one."""
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise Render3DError(f"could not create a new run folder next to {base}: pass --out")


def run_dir_for(out: Optional[str], default: Path, checkpoint_name: str, *, resuming: bool, overwrite: bool,
                what: str = "run") -> Path:
    """The run folder of a trainer: ``out`` (refused when it holds another run, see :func:`refuse_existing_run`), or a
    new folder claimed at ``default`` (or ``default-N``) by rank 0 of a distributed run, whose name the other ranks learn."""
    from render3d.training import distributed as dist

    if out:
        refuse_existing_run(Path(out), checkpoint_name, resuming=resuming, overwrite=overwrite, what=what)
        return Path(out)
    return Path(dist.share_text("render3d/run_dir", str(claim_new_run_dir(default)) if dist.is_main() else None))
