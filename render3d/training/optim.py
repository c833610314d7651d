"""The optimisation step every trainer shares: backward, gradient clipping, optimiser steps."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from render3d.training.distributed import average_gradients


def parameters_of(optimizers: Iterable[torch.optim.Optimizer]) -> list[Tensor]:
    """Every parameter the optimisers update."""
    return [p for opt in optimizers for group in opt.param_groups for p in group["params"]]


def backward_and_step(loss: Tensor, optimizers: Iterable[torch.optim.Optimizer], grad_clip: float = 0.0) -> None:
    """``loss.backward()``, average the gradients over the ranks of a distributed run, clip their
    global norm to ``grad_clip`` (0: off), step and clear every optimiser."""
    optimizers = list(optimizers)
    loss.backward()
    parameters = parameters_of(optimizers)
    average_gradients(parameters)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    for opt in optimizers:
        opt.step()
        opt.zero_grad(set_to_none=True)
