"""The baseline: a round as soon as any new label is waiting (and no round is running)."""

from __future__ import annotations

from etuner_ros.core.policies.base import Decision, Observation, Policy, no_labels


class ImmediatePolicy(Policy):
    name = "immediate"

    def decide(self, obs: Observation) -> Decision:
        return no_labels(obs) or Decision(True, f"tune: {obs.pending_labels} new labels")
