"""Speed measurements for zoo models: training-step FLOPs, steps/s and GFLOP/s beside a plain matmul's.

On a shared or throttled CPU, absolute throughput varies from minute to minute, so every speed
number the bench prints sits beside the GFLOP/s of a 2048x2048 float32 matrix product measured
in the same run: the ratio carries over to other machines, the raw number does not.
"""

from __future__ import annotations

import copy
import time
from typing import Optional

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from render3d.zoo.base import ZooModel


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an ``n x n`` matrix product (the best of ``repeats``): the machine's practical peak."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def step_flops(model: ZooModel, x: Tensor, y: Optional[Tensor] = None) -> float:
    """Floating-point operations of one training step (forward and backward) on the batch ``x``.

    Counted on a copy, so ``model`` and its optimiser state are untouched. Only matrix products
    and convolutions are counted (what dominates; elementwise work is not). The loss's backward
    is called directly, not ``fit``: in a distributed run only rank 0 counts, and ``fit`` would
    wait for the other ranks' gradients.
    """
    probe = copy.deepcopy(model)
    probe.train()
    with FlopCounterMode(display=False) as counter:
        with probe.autocast():
            loss, _ = probe.loss(x, y)
        loss.backward()
    return float(counter.get_total_flops())
