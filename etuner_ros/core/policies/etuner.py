"""ETuner: LazyTune timing + SimFreeze + semi-supervised pseudo-labels (the full method)."""

from __future__ import annotations

from etuner_ros.core.policies.lazytune import LazyTunePolicy


class ETunerPolicy(LazyTunePolicy):
    """Same decisions as :class:`LazyTunePolicy`; the flags make the tuner freeze converged
    groups and add confident pseudo-labels to each round."""

    name = "etuner"
    uses_simfreeze = True
    uses_semi_supervised = True
    uses_drift = True
