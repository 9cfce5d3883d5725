"""Immediate + AdaBN: immediate's rounds with the same BatchNorm re-estimation etuner gets.

Rule: immediate's decision first (a training round whenever labels wait). Every training round
first re-estimates BN statistics on the newest camera frames (``adabn_in_rounds``, as in
etuner's rounds). When immediate would not tune (no labels waiting) but the camera's input
statistics moved at least ``adapt_shift`` (``ADAPT_SHIFT``, 0.3) since the serving model's BN
statistics were last adapted, a BN-only round, exactly as etuner and ``adabn`` do. Candidates
pass the same validation gate as every other round (``core/gate.py``). This row separates what
etuner gains from BN re-estimation from what it gains from LazyTune, SimFreeze and
pseudo-labels.
"""

from __future__ import annotations

from etuner_ros.core.policies.base import ADAPT_SHIFT, Decision, Observation, bn_shift, check_shift
from etuner_ros.core.policies.immediate import ImmediatePolicy


class ImmediateAdaBNPolicy(ImmediatePolicy):
    name = "immediate_adabn"
    adapts_bn = True
    adabn_in_rounds = True

    def __init__(self, adapt_shift: float = ADAPT_SHIFT) -> None:
        self.adapt_shift = check_shift(adapt_shift)

    def decide(self, obs: Observation) -> Decision:
        d = super().decide(obs)
        if d.tune:
            return d
        return bn_shift(obs, self.adapt_shift, d.reason) or d
