"""Loss-term plug-ins: extra losses added to any method's own, with a weight schedule.

A loss term receives the step's batch, the method's differentiable renders of it (and
may render extra views through ``method.render_views``) and returns named, unweighted
losses; the Trainer multiplies them by the term's weight at that step and adds them to
the method's. Terms are enabled from the CLI (``render3d train --loss depth:0.1,mask``,
options as ``--loss.depth.NAME``) or from Python (``Trainer(..., loss_terms=[...])``),
and are saved in the checkpoint (name, options and state), so ``--resume`` continues
bit-identically.

Adding a loss term
------------------
A module with a config dataclass derived from :class:`LossConfig` (its fields become
``--loss.NAME.OPTION``) and a class derived from :class:`LossTerm` whose ``losses(ctx)``
returns named tensors, plus one entry point in the ``render3d.loss_terms`` group; the
docs/extending.md ("Adding a loss term") has a worked example, which ``tests/test_contract.py`` runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Optional, Sequence

from torch import Tensor

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.registry import LOSS_TERMS


@dataclass
class LossConfig:
    """Options every loss term has (CLI: ``--loss.NAME.OPTION``)."""

    weight: float = option("weight of the term's losses", default=0.1)
    final_weight: Optional[float] = option("anneal the weight linearly to this value by the end of the term (default: constant)", default=None)
    start: float = option("fraction of the run at which the term starts", default=0.0)
    stop: float = option("fraction of the run after which the term stops", default=1.0)

    def weight_at(self, step: int, total_steps: int) -> float:
        """The weight at ``step`` of a ``total_steps`` run (0 outside [start, stop))."""
        fraction = step / max(total_steps, 1)
        if not self.start <= fraction < self.stop:
            return 0.0
        if self.final_weight is None:
            return self.weight
        progress = (fraction - self.start) / max(self.stop - self.start, 1e-12)
        return self.weight + (self.final_weight - self.weight) * progress


@dataclass
class LossContext:
    """What a loss term sees: the step, the batch, the method's output on it, the method and the scene."""

    step: int
    total_steps: int
    batch: Any  # render3d.methods.Batch
    output: Any  # render3d.methods.StepOutput
    method: Any  # render3d.methods.Method
    scene: Any  # render3d.datasets.SceneData


class LossTerm:
    """Base class of loss terms (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_type: ClassVar[type[LossConfig]] = LossConfig

    def __init__(self, config: Optional[LossConfig] = None) -> None:
        self.config = config if config is not None else self.config_type()
        self.scene_scale = 1.0

    def setup(self, scene: Any, seed: int) -> None:
        """Called by the Trainer before training: check that ``scene`` has what the term needs
        (one-line :class:`Render3DError` if not) and seed any random stream from ``seed``."""
        self.scene_scale = float(scene.scene_scale)

    def before_step(self, step: int, total_steps: int, method: Any) -> None:
        """Called before each step's batch (e.g. to anneal the model's frequencies); nothing by default."""

    def losses(self, ctx: LossContext) -> dict[str, Tensor]:
        """Named, unweighted scalar losses for this step."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Random streams and other state, for exact resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def spec(self) -> dict:
        """What the checkpoint stores to rebuild the term."""
        return {"name": self.name, "config": asdict(self.config), "state": self.state_dict()}


def parse_loss_spec(text: str) -> list[tuple[str, Optional[float]]]:
    """``"depth:0.1,mask"`` -> ``[("depth", 0.1), ("mask", None)]``, with one-line errors."""
    terms: list[tuple[str, Optional[float]]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight_text = part.partition(":")
        weight = None
        if weight_text:
            try:
                weight = float(weight_text)
            except ValueError:
                raise Render3DError(f"--loss {part!r}: the weight after ':' must be a number, e.g. depth:0.1") from None
            if not weight >= 0 or weight == float("inf"):
                raise Render3DError(f"--loss {part!r}: the weight must be a finite number >= 0")
        LOSS_TERMS.get(name)  # unknown names fail here, listing the choices
        if any(name == seen for seen, _ in terms):
            raise Render3DError(f"--loss names {name!r} twice: give each term once")
        terms.append((name, weight))
    return terms


def build_loss_terms(spec: str, options: Optional[dict[str, dict[str, Any]]] = None) -> list[LossTerm]:
    """Terms from a ``--loss`` spec; ``options`` maps a term name to its config field overrides."""
    built = []
    for name, weight in parse_loss_spec(spec):
        cls = LOSS_TERMS.get(name)
        fields = dict((options or {}).get(name, {}))
        if weight is not None:
            fields["weight"] = weight
        built.append(cls(cls.config_type(**fields)))
    return built


def terms_from_specs(specs: Sequence[dict]) -> list[LossTerm]:
    """Rebuild terms from the checkpoint's :meth:`LossTerm.spec` entries (state restored after ``setup``)."""
    built = []
    for entry in specs:
        cls = LOSS_TERMS.get(entry["name"])
        built.append(cls(cls.config_type(**entry["config"])))
    return built
