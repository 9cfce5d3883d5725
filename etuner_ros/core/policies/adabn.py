"""AdaBN: label-free test-time adaptation, the baseline for what etuner gets from BatchNorm.

Rule: when the camera's input statistics moved at least ``adapt_shift`` (``ADAPT_SHIFT``, 0.3)
since the serving model's BatchNorm statistics were last adapted, run a BN-only round: the
serving model's BN running mean/var of the first ``adabn_depth`` layer groups are re-estimated
on ``adabn_frames`` camera frames spread over the newest ``adabn_window`` (shipped: 48 of 48,
i.e. the newest 6 s; forward passes only, no gradients; a robot's camera shows one object for
seconds, so only shallow statistics, which follow light, noise and camera, are adapted: deep
ones fitted to two or three objects collapse the classifier).
Otherwise idle. Never trains on a label.

Acceptance is label-free too (``label_free``): the candidate serves if its information score on
those frames (entropy of the mean prediction minus the mean entropy: confident *and* diverse) is
at least the serving model's (tie passes; see ``core/gate.py``). Held-out labels are not
consulted, so the row shows exactly what adaptation without any caregiver can do. Labels
still reach the tuner, but only as accuracy evidence for ``~/status``; they are not kept for
training.
"""

from __future__ import annotations

from etuner_ros.core.policies.base import (
    ADAPT_SHIFT,
    Decision,
    Observation,
    Policy,
    bn_shift,
    check_shift,
)


class AdaBNPolicy(Policy):
    name = "adabn"
    adapts_bn = True
    label_free = True
    label_memory = False  # adabn_memory is this row with the caregiver's label memory

    def __init__(self, adapt_shift: float = ADAPT_SHIFT) -> None:
        self.adapt_shift = check_shift(adapt_shift)

    def decide(self, obs: Observation) -> Decision:
        return bn_shift(obs, self.adapt_shift) or Decision(
            False, f"idle: input shift {obs.input_shift:.2f} < {self.adapt_shift:.2f} "
                   "(never trains on labels)")
