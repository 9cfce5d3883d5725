"""Tune on a fixed timer: the naive way to batch rounds, blind to what the stream does."""

from __future__ import annotations

from etuner_ros.core.policies.base import Decision, Observation, Policy, no_labels


class PeriodicPolicy(Policy):
    """``period_s`` (default 60 s of stream time) between rounds, if labels are waiting."""

    name = "periodic"

    def __init__(self, period_s: float = 60.0) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.period_s = float(period_s)

    def decide(self, obs: Observation) -> Decision:
        idle = no_labels(obs)
        if idle:
            return idle
        if obs.seconds_since_last_round >= self.period_s:
            return Decision(True, f"tune: period {obs.seconds_since_last_round:.0f} s >= "
                                  f"{self.period_s:.0f} s, {obs.pending_labels} labels")
        return Decision(False, f"defer: {obs.pending_labels} labels pending, next round in "
                               f"{self.period_s - obs.seconds_since_last_round:.0f} s")
