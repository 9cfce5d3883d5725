"""Pinned CPU float code paths: a benchmark seed gives the same numbers on any x86-64 machine.

Why: torch chooses its CPU kernels by the instruction set of the machine it runs on (ATen's
vectorised kernels, oneDNN's convolutions, MKL's BLAS). AVX2 and AVX-512 kernels sum floats in
different orders, so one seed trains a different starting model on different machines, and
every accuracy of the benchmark moves. Measured here on 2026-12-07 (synthetic home, seed 0,
``none``, i.e. nothing but the starting model, trained from scratch each time): 45.64 % with
this machine's AVX-512 kernels, 42.79 % with AVX2 kernels, 45.50 % with ATen's scalar kernels;
the README's tables of 2026-11-23 came from yet another machine and were not reproduced here.

So the benchmark, the starting models it trains and the probes hold every library at AVX2,
which x86-64 servers and desktops have had since about 2015: ``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2`` and ``MKL_CBWR=AVX2`` (MKL's conditional numerical
reproducibility). It costs nothing here (immediate on seed 100: 1.5 % faster than with
AVX-512). The libraries read these once, when torch loads, so :func:`pin_cpu_numerics` must
run before ``import torch`` (``etuner_ros.bench`` calls it on import, and ``scripts/env.sh``
exports the same values for everything the README's commands run, so the starting models the
demo and the tests cache are the benchmark's); a value the caller set wins. Other CPUs (ARM,
x86 without AVX2) are left alone and give their own numbers. :func:`numerics_tag` says which
kernels actually ran; it is part of every cached starting model's key and of ``results.json``.

Nothing here is for the robot's nodes: they serve with whatever kernels are fastest.
"""

from __future__ import annotations

import os
import platform
import sys

PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
}
_X86 = ("x86_64", "amd64")  # as scripts/env.sh (uname -m) and the tests


def pin_cpu_numerics() -> bool:
    """Set :data:`PINNED` in the environment (the caller's own values win) on x86 machines, so
    this process and every process it starts use the same kernels. Returns False (and sets
    nothing) where it cannot take effect: a CPU that is not x86, or torch already loaded."""
    if platform.machine().lower() not in _X86 or "torch" in sys.modules:
        return False
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    return True


def numerics_tag() -> str:
    """Which kernels this process computes with, e.g. ``x86_64 aten=AVX2 onednn=AVX2
    mkl=AVX2`` when pinned, ``... aten=AVX512 onednn=native mkl=native`` when not."""
    import torch

    return (f"{platform.machine().lower()} aten={torch.backends.cpu.get_cpu_capability()} "
            f"onednn={os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')} "
            f"mkl={os.environ.get('MKL_CBWR', 'native')}")
