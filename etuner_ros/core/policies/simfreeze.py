"""Immediate timing + SimFreeze: isolates the intra-tuning saving (ablation)."""

from __future__ import annotations

from etuner_ros.core.policies.base import Decision, Observation
from etuner_ros.core.policies.immediate import ImmediatePolicy


class SimFreezePolicy(ImmediatePolicy):
    """Tunes like immediate; the tuner freezes converged groups. The drift detector runs only
    to thaw them at a scenario change."""

    name = "simfreeze"
    uses_simfreeze = True
    uses_drift = True

    def decide(self, obs: Observation) -> Decision:
        d = super().decide(obs)
        if d.tune and obs.change_detected:
            return Decision(True, f"{d.reason}; scenario change (score {obs.change_score:.1f}): "
                                  "unfreeze", unfreeze=True)
        return d
