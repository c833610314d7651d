"""What a benchmark ran on: CPU, threads, load, and a plain 2048x2048 float32 matmul's GFLOP/s from the same run."""

from __future__ import annotations

import os
import platform
import time

import torch


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of ``size`` x ``size`` float32 matrix products on the CPU (best of ``repeats``, after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def describe() -> str:
    """One line: processor, cores, torch threads, load average and the matmul GFLOP/s now."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"load average {load:.1f} (shared machine), 2048^2 float32 matmul {matmul_gflops():.1f} GFLOP/s")
