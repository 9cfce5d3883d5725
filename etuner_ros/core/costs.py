"""Cost accounting: what every piece of the tuner's work cost, by kind.

The benchmark compares policies by their cost, and its deterministic stream clock charges a
round from its *counted* FLOPs, so every piece of work is charged here, for every policy alike:
training, BatchNorm re-estimation, SimFreeze probes, pseudo-labelling, validation and the
change detector's embeddings. Each entry carries measured wall seconds, CPU seconds
(``time.process_time`` via :class:`EnergyMeter`), joules (the best counter the machine has) and
analytic FLOPs (deterministic: the same work gives the same number on any machine; the measured
ones are reported beside it).

Work inside a round is charged to the round (:class:`RoundCost`); work between rounds (drift
embeddings, input statistics, re-basing the detector after a swap) is *overhead*, kept in the
ledger's running totals and reported in ``ContinualTuner.status()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from etuner_ros.core.energy import EnergyMeter

#: Every kind of work the tuner charges (keys of ``flops_by_kind``).
KINDS = ("train", "adabn", "probe", "pseudo", "validate", "embed")


@dataclass
class RoundCost:
    """Measured and counted cost of one block of work."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    joules: float = 0.0
    source: str = "n/a"
    flops_by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def flops(self) -> float:
        return float(sum(self.flops_by_kind.values()))

    def add_flops(self, kind: str, flops: float) -> None:
        """Charge ``flops`` (analytic, from per-group forward FLOPs) to ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"unknown cost kind {kind!r}; one of {KINDS}")
        self.flops_by_kind[kind] = self.flops_by_kind.get(kind, 0.0) + float(flops)


class CostLedger:
    """Measures blocks of work and keeps the overhead totals. Not thread-safe on its own: the
    tuner calls :meth:`add_overhead` under its lock."""

    def __init__(self, meter: EnergyMeter | None = None) -> None:
        self.meter = meter or EnergyMeter()
        self.overhead = RoundCost()

    @contextmanager
    def measure(self) -> Iterator[RoundCost]:
        """Time/CPU/energy of the block; the caller charges FLOPs with ``add_flops``."""
        cost = RoundCost()
        with self.meter.measure() as m:
            yield cost
        cost.seconds, cost.cpu_seconds = m.seconds, m.cpu_seconds
        cost.joules, cost.source = m.joules, m.source

    def add_overhead(self, cost: RoundCost) -> None:
        """Work between rounds (drift embeddings, input statistics, re-basing)."""
        o = self.overhead
        o.seconds += cost.seconds
        o.cpu_seconds += cost.cpu_seconds
        o.joules += cost.joules
        o.source = cost.source
        for k, v in cost.flops_by_kind.items():
            o.add_flops(k, v)

    def status(self) -> dict:
        o = self.overhead
        return {"overhead_seconds": o.seconds, "overhead_cpu_seconds": o.cpu_seconds,
                "overhead_joules": o.joules, "overhead_flops": o.flops,
                "overhead_flops_by_kind": dict(o.flops_by_kind)}
