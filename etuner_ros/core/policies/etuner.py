"""ETuner: LazyTune timing + SimFreeze + semi-supervised learning on unlabelled frames.

Rule: LazyTune's decision first (a full round: labels + replay + gated pseudo-labels, with
AdaBN on the newest frames, SimFreeze-frozen prefix). When LazyTune would not tune (defer or
no labels) but the camera's input statistics moved at least ``adapt_shift`` since the serving
model's BatchNorm statistics were last adapted (``Observation.input_shift``: the max absolute
change of per-channel mean/std of the preprocessed frames; within one scene it stays below
~0.2, a new light, room or camera moves it 0.5-2), answer an AdaBN-only round: forward passes
over the newest frames, no labels trained on, a few hundredths of the cost of a training round,
and by far the cheapest accuracy we found for lighting/camera shifts (dim kitchen 24% -> 82%
for the starting model without a single label). Every candidate, BN-only ones included, passes
the validation gate of ``core/gate.py``. ``adapt_shift`` = ``ADAPT_SHIFT`` (policies/base.py),
shared with ``adabn`` and ``immediate_adabn`` so the rows differ only in what they add.
"""

from __future__ import annotations

from etuner_ros.core.policies.base import ADAPT_SHIFT, Decision, Observation, bn_shift, check_shift
from etuner_ros.core.policies.lazytune import LazyTunePolicy


class ETunerPolicy(LazyTunePolicy):
    """Same decisions as :class:`LazyTunePolicy`; the flags make the tuner freeze converged
    groups and add confident pseudo-labels to each round."""

    name = "etuner"
    uses_simfreeze = True
    uses_semi_supervised = True
    uses_drift = True
    adapts_bn = True
    adabn_in_rounds = True

    def __init__(self, adapt_shift: float = ADAPT_SHIFT, **lazytune) -> None:
        super().__init__(**lazytune)
        self.adapt_shift = check_shift(adapt_shift)

    def decide(self, obs: Observation) -> Decision:
        d = super().decide(obs)
        if d.tune:
            return d
        return bn_shift(obs, self.adapt_shift, d.reason) or d
