"""The benchmark's stream clock and seeding: what makes a seed's accuracy reproducible.

A tuning round's model serves from the moment the round would have finished on the robot. The
old benchmark charged each round its *measured* wall time, so machine load moved swaps and
changed accuracy by several points between two runs of one seed. Now a round is charged a
deterministic cost from its counted work: ``flops / DEVICE_FLOPS_PER_S + ROUND_FIXED_S``.
Measured wall time, CPU time and energy are still reported beside it, never used for timing.

``DEVICE_FLOPS_PER_S`` = 4 GFLOP/s: the sustained rate of PyTorch training of a small
depthwise CNN (MobileNetV3-small at 64 px, batch 32) on an embedded 4-core Cortex-A72/A76-class
CPU (Raspberry Pi 4/5, Jetson Nano's CPU), which is what an eldercare robot without a GPU
tunes on. It is also what this benchmark measured on one core of its x86 development machine
(413 GFLOP of immediate's rounds in 95 s of wall time, ~4.3 GFLOP/s), so the stream-clock
latency of a round stays what it was when wall time was charged on an idle machine.
``ROUND_FIXED_S`` charges each round's fixed work (cloning the model, building tensors,
swapping weights) that FLOPs do not count.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_FLOPS_PER_S = 4.0e9
ROUND_FIXED_S = 0.05


def round_seconds(flops: float, flops_per_s: float = DEVICE_FLOPS_PER_S,
                  fixed_s: float = ROUND_FIXED_S) -> float:
    """Stream-clock duration of a round that did ``flops`` of counted work."""
    if flops < 0 or flops_per_s <= 0 or fixed_s < 0:
        raise ValueError(f"round_seconds: flops {flops} >= 0, flops_per_s {flops_per_s} > 0 "
                         f"and fixed_s {fixed_s} >= 0 required")
    return float(flops) / flops_per_s + fixed_s


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch and ask torch for deterministic kernels.

    ``use_deterministic_algorithms(warn_only=True)``: every op the benchmark runs on CPU has a
    deterministic kernel; a GPU op without one warns instead of failing the run.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
