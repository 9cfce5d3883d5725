"""SimFreeze: freeze layer groups whose representation has stopped changing.

Rule (our design): a probe batch is pushed through the candidate right before a round trains
(after its AdaBN step, so new BatchNorm statistics are not mistaken for learning:
:meth:`set_reference`) and right after it (:meth:`check`), in every round that trains at least
``check_every`` sample-passes (a tiny round would see "no change" because too little training
happened). For each layer group ``i`` except the head we compute
``linear_cka(out_i(after), out_i(before))``: how much this round's training moved the group's
representation; a group is *stable* after ``patience`` consecutive checks at or above
``threshold``.
The probe is the round's own newest training frames (at most ``probe_size``; the tuner calls
:meth:`set_probe` with ``keep_history=True`` each round): what matters is whether training
still moves the representation of what the robot sees *now*; a probe fixed at the first
scene's frames read "stable" while later scenes' features were still being reshaped.
The frozen prefix is the longest run of stable groups from the front (a frozen group needs its
inputs frozen too, otherwise its cached outputs would be stale), capped so the last
``min_trainable`` groups (the head and the group right before it) always train: on DEV seed 100
(old world) all 7 groups but the head froze within 24 rounds, after which every candidate
failed validation and the policy ended 4.0 points below immediate; the back groups are also
the cheapest to train (the front groups run at the highest resolution).
Groups never thaw on their own: a frozen group does not train, so its CKA stays 1; only
:meth:`unfreeze_all` (a detected scenario change: the old features may no longer suit the new
home) resets them. The probe forward passes run inside the round, so their cost is in its
time, energy and FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from etuner_ros.core.cka import linear_cka


@dataclass
class SimFreezeConfig:
    """Defaults in one place."""

    threshold: float = 0.99   # CKA at/above which a group counts as unchanged since last check
    patience: int = 1         # consecutive stable checks before a group may freeze
    probe_size: int = 32      # images in the fixed probe batch
    check_every: int = 128    # trained sample-passes between checks: a check after a tiny
    #                           round would see "no change" because too little training happened
    min_trainable: int = 2    # back groups (head included) that never freeze


class SimFreeze:
    """Per-group stability bookkeeping; the tuner supplies the group outputs."""

    def __init__(self, group_names: list[str], config: SimFreezeConfig | None = None) -> None:
        if len(group_names) < 1:
            raise ValueError("SimFreeze needs at least one layer group")
        self.config = config or SimFreezeConfig()
        self.group_names = list(group_names)
        self.probe: torch.Tensor | None = None
        self._last: list[torch.Tensor | None] = [None] * (len(group_names) - 1)
        self.stable = [0] * (len(group_names) - 1)
        self.last_cka: list[float | None] = [None] * (len(group_names) - 1)
        self.frozen_prefix = 0
        self.checks = 0

    @property
    def frozen_groups(self) -> list[str]:
        return self.group_names[: self.frozen_prefix]

    @property
    def has_reference(self) -> bool:
        return any(r is not None for r in self._last)

    def set_probe(self, probe: torch.Tensor, keep_history: bool = False) -> None:
        """Set the probe batch (``[N,3,S,S]``, preprocessed). Unless ``keep_history``, this
        forgets the stability counts (each check compares before/after one round on the same
        probe, so a new probe per round is sound when the counts are kept)."""
        if probe.shape[0] < 2:
            raise ValueError("SimFreeze probe needs at least 2 images")
        self.probe = probe.detach().clone()
        self._last = [None] * len(self._last)
        if not keep_history:
            self.stable = [0] * len(self.stable)

    def set_reference(self, outputs: list[torch.Tensor]) -> None:
        """Outputs of groups ``0..G-2`` on the probe that the next :meth:`check` compares
        against (the candidate before training); does not count as a check."""
        if len(outputs) != len(self._last):
            raise ValueError(f"expected {len(self._last)} group outputs, got {len(outputs)}")
        self._last = [o.detach().clone() for o in outputs]

    def check(self, outputs: list[torch.Tensor]) -> int:
        """Record the outputs of groups ``0..G-2`` on the probe; return the new frozen prefix."""
        if len(outputs) != len(self._last):
            raise ValueError(f"expected {len(self._last)} group outputs, got {len(outputs)}")
        self.checks += 1
        for i, out in enumerate(outputs):
            prev = self._last[i]
            if prev is not None:
                c = 1.0 if i < self.frozen_prefix else linear_cka(prev, out)
                self.last_cka[i] = c
                self.stable[i] = self.stable[i] + 1 if c >= self.config.threshold else 0
            self._last[i] = out.detach().clone()
        k = 0
        cap = max(0, len(self.group_names) - max(1, self.config.min_trainable))
        while k < min(len(self.stable), cap) and self.stable[k] >= self.config.patience:
            k += 1
        self.frozen_prefix = max(self.frozen_prefix, k)
        return self.frozen_prefix

    def unfreeze_all(self) -> None:
        """A scenario change: every group trains again and must prove stability anew."""
        self.frozen_prefix = 0
        self.stable = [0] * len(self.stable)

    def status(self) -> dict:
        return {"frozen_groups": self.frozen_groups, "stable_checks": list(self.stable),
                "last_cka": [None if c is None else round(c, 4) for c in self.last_cka]}
