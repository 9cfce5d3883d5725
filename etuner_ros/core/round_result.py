"""What one tuning round reports: the candidate, the gate's verdict, what it trained on and cost.

Its own module because three readers share it: the tuner node (save, swap, log), the benchmark
(accuracy, FLOPs, energy by round) and ``ContinualTuner.status()["last_round"]``
(:meth:`RoundResult.summary`), so the fields cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etuner_ros.core.costs import RoundCost
from etuner_ros.core.model import ModelBundle


@dataclass
class RoundResult:
    candidate: ModelBundle
    accepted: bool
    val_accuracy: float
    baseline_val_accuracy: float
    duration_s: float
    train_flops: float          # every FLOP of the round (all kinds, see ``flops_by_kind``)
    energy_joules: float
    energy_source: str
    n_labels: int
    n_replay: int
    n_pseudo: int
    frozen_groups: list[str]
    reason: str
    epochs_run: int = 0
    cpu_seconds: float = 0.0
    flops_by_kind: dict[str, float] = field(default_factory=dict)
    bn_only: bool = False
    gate: str = ""              # evidence the gate used: "labels:N", "information:N", ...

    @classmethod
    def measured(cls, cand: ModelBundle, accepted: bool, val: float, base: float,
                 cost: RoundCost, n_labels: int, n_replay: int, n_pseudo: int,
                 frozen: list[str], reason: str, epochs: int, bn_only: bool,
                 gate: str) -> RoundResult:
        """A round's result with the time, CPU, energy and FLOPs ``cost`` measured."""
        return cls(cand, accepted, val, base, cost.seconds, cost.flops, cost.joules,
                   cost.source, n_labels, n_replay, n_pseudo, list(frozen), reason,
                   epochs, cost.cpu_seconds, dict(cost.flops_by_kind), bn_only, gate)

    def summary(self) -> dict:
        """Everything but the candidate model, for ``status()["last_round"]``."""
        return {"duration_s": self.duration_s, "cpu_seconds": self.cpu_seconds,
                "accepted": self.accepted, "val_accuracy": self.val_accuracy,
                "baseline_val_accuracy": self.baseline_val_accuracy,
                "n_labels": self.n_labels, "n_replay": self.n_replay,
                "n_pseudo": self.n_pseudo, "frozen_groups": list(self.frozen_groups),
                "train_flops": self.train_flops, "flops_by_kind": self.flops_by_kind,
                "bn_only": self.bn_only, "gate": self.gate, "reason": self.reason}
