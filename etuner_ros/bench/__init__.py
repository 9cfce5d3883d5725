"""Benchmark: one labelled stream through every tuning policy.

Importing it pins the CPU kernels torch will use (``core/numerics.py``) when torch is not loaded
yet, so every way into the benchmark (``python -m etuner_ros.bench``, its worker processes, the
probes under ``scripts/``) computes a seed's numbers with the same float code paths.
"""

from etuner_ros.core.numerics import pin_cpu_numerics

pin_cpu_numerics()
