"""Benchmark: one labelled stream through every tuning policy.

Importing it pins the CPU kernels torch will use (``core/numerics.py``) when torch is not loaded
yet, so ``python -m etuner_ros.bench`` (and ``etuner-bench``) and its worker processes compute a
seed's numbers with the same float code paths on any x86-64 machine. The probes under
``scripts/`` load torch first; they get the same pins from ``scripts/env.sh``, which their
docstrings ask to source.
"""

from etuner_ros.core.numerics import pin_cpu_numerics

pin_cpu_numerics()
