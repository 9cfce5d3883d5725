"""Never tune: the starting model serves the whole stream (the lower bound)."""

from __future__ import annotations

from etuner_ros.core.policies.base import Decision, Observation, Policy


class NonePolicy(Policy):
    name = "none"
    label_memory = False  # the starting model alone: the lower bound

    def decide(self, obs: Observation) -> Decision:
        return Decision(False, f"policy none: never tunes ({obs.pending_labels} labels pending)")
