"""The shared training machinery: the loop, callbacks, stopping on signals, the optimisation step."""

from render3d.training.callbacks import Callback, StepEvent
from render3d.training.loop import EvaluationInterrupted, TrainingInterrupted, TrainLoop
from render3d.training.optim import backward_and_step

__all__ = ["Callback", "EvaluationInterrupted", "StepEvent", "TrainLoop", "TrainingInterrupted", "backward_and_step"]
