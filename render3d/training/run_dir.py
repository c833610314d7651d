"""Run folders, one policy for every trainer (3D, zoo, video): a new one is claimed safely, an
existing run is refused unless the command resumes it or asks to overwrite it."""

from __future__ import annotations

from pathlib import Path

from render3d.errors import Render3DError


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
