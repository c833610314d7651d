"""Callbacks: what a training loop tells its listeners (the viewer, loggers, tests).

Subclass :class:`Callback` and override the hooks you need; pass instances to a trainer
(``Trainer(..., callbacks=[...])`` or ``trainer.add_callback(cb)``). Hooks run on the
training thread between steps, never inside one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class StepEvent:
    """One finished training step.

    Attributes:
        step: steps done so far (the step just finished is ``step - 1``).
        total_steps: the run's step count.
        loss: the weighted total loss of the step.
        seconds: how long the step took.
        stats: the step's named losses (``loss/NAME``) and the method's numbers.
        eval_psnr: the latest periodic test PSNR, when one was measured.
    """

    step: int
    total_steps: int
    loss: float
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    eval_psnr: Optional[float] = None

    @property
    def steps_per_second(self) -> float:
        return 1.0 / max(self.seconds, 1e-9)


class Callback:
    """Hooks of a training loop; every hook is optional (the defaults do nothing)."""

    def on_train_start(self, loop: Any) -> None:
        """Before the first step of this ``run()`` (also after a resume)."""

    def on_step_start(self, loop: Any, step: int) -> None:
        """Before step ``step`` starts."""

    def on_step_end(self, loop: Any, event: StepEvent) -> None:
        """After a step (its evaluation and checkpoint, if any, included)."""

    def on_eval(self, loop: Any, metrics: dict[str, Any]) -> None:
        """After a periodic or final evaluation."""

    def on_checkpoint(self, loop: Any, path: Path) -> None:
        """After a checkpoint was written."""

    def on_train_end(self, loop: Any, result: dict[str, Any]) -> None:
        """After the final checkpoint, evaluation and metrics."""
