"""The optimisation step every trainer shares: backward, gradient clipping, optimiser steps."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def parameters_of(optimizers: Iterable[torch.optim.Optimizer]) -> list[Tensor]:
    """Every parameter the optimisers update."""
    return [p for opt in optimizers for group in opt.param_groups for p in group["params"]]


def backward_and_step(loss: Tensor, optimizers: Iterable[torch.optim.Optimizer], grad_clip: float = 0.0) -> None:
    """``loss.backward()``, clip the global gradient norm to ``grad_clip`` (0: off), step and clear every optimiser."""
    optimizers = list(optimizers)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters_of(optimizers), grad_clip)
    for opt in optimizers:
        opt.step()
        opt.zero_grad(set_to_none=True)
