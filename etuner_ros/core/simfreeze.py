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
time, energy and FLOPs; they skip what cannot change: the frozen prefix runs once (its output
is the same before and after training), the groups that never freeze not at all, and once
every freezable group is frozen (:attr:`done`) no probe runs until a thaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from etuner_ros.core.cka import linear_cka


@dataclass
class SimFreezeConfig:
    """Defaults in one place."""

    threshold: float = 0.98   # CKA at/above which a group counts as unchanged by a round.
    #                           Tuned on DEV seeds 100, 101 (synthetic): 0.99 gave +2.9 points
    #                           over immediate at 0.63x its CPU time, 0.98 +1.3 at 0.54x
    patience: int = 1         # consecutive stable checks before a group may freeze
    probe_size: int = 32      # images in each round's probe batch
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

    @property
    def cap(self) -> int:
        """How many groups from the front may ever freeze (the last ``min_trainable`` never)."""
        return min(len(self._last),
                   max(0, len(self.group_names) - max(1, self.config.min_trainable)))

    @property
    def done(self) -> bool:
        """Every group that may freeze is frozen: nothing left to check (no probe cost)."""
        return self.frozen_prefix >= self.cap

    def _span(self, outputs: list[torch.Tensor], start: int) -> None:
        n = len(self._last)
        if not 0 <= start <= n or len(outputs) > n - start or \
                start + len(outputs) < self.cap:
            raise ValueError(f"group outputs {start}..{start + len(outputs) - 1} must cover "
                             f"the groups that may still freeze ({start}..{self.cap - 1}) "
                             f"within 0..{n - 1}")

    def set_reference(self, outputs: list[torch.Tensor], start: int = 0) -> None:
        """Outputs of groups ``start..`` (at least up to ``cap - 1``) on the probe that the next
        :meth:`check` compares against (the candidate before training); not a check. Groups
        before ``start`` are frozen, so they need no outputs: the probe's forward passes skip
        what cannot change."""
        self._span(outputs, start)
        self._last = [None] * len(self._last)
        for j, o in enumerate(outputs):
            self._last[start + j] = o.detach().clone()

    def check(self, outputs: list[torch.Tensor], start: int = 0) -> int:
        """Record the outputs of groups ``start..`` on the probe; return the new frozen
        prefix."""
        self._span(outputs, start)
        self.checks += 1
        for j, out in enumerate(outputs):
            i = start + j
            prev = self._last[i]
            if prev is not None:
                c = 1.0 if i < self.frozen_prefix else linear_cka(prev, out)
                self.last_cka[i] = c
                self.stable[i] = self.stable[i] + 1 if c >= self.config.threshold else 0
            self._last[i] = out.detach().clone()
        k = self.frozen_prefix
        while k < self.cap and self.stable[k] >= self.config.patience:
            k += 1
        self.frozen_prefix = k
        return self.frozen_prefix

    def unfreeze_all(self) -> None:
        """A scenario change: every group trains again and must prove stability anew."""
        self.frozen_prefix = 0
        self.stable = [0] * len(self.stable)

    def status(self) -> dict:
        return {"frozen_groups": self.frozen_groups, "stable_checks": list(self.stable),
                "last_cka": [None if c is None else round(c, 4) for c in self.last_cka]}
