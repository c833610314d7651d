"""What a benchmark ran on: CPU, threads, load, and a plain 2048x2048 float32 matmul's GFLOP/s from the same run."""

from __future__ import annotations

import os
import platform

import torch

from render3d.zoo.perf import matmul_gflops


def describe() -> str:
    """One line: processor, cores, torch threads, load average and the matmul GFLOP/s now."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"load average {load:.1f} (shared machine), 2048^2 float32 matmul {matmul_gflops():.1f} GFLOP/s")
