"""AdaBN + label memory: the strongest baseline that never trains on a label.

Rule: ``adabn``'s BN-only rounds, exactly (label-free decisions and gate), and the caregiver's
labels go only into the label memory (``core/label_memory.py``), which answers for views
near-identical to a labelled one. Every labelled policy serves with the same memory, so this
row shows what the labels give without any training round: the gap between it and ``etuner``
is what etuner's rounds (LazyTune, SimFreeze, pseudo-labels) add.
"""

from __future__ import annotations

from etuner_ros.core.policies.adabn import AdaBNPolicy


class AdaBNMemoryPolicy(AdaBNPolicy):
    name = "adabn_memory"
    label_memory = True
