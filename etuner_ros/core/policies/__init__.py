"""Tuning policies: one file each, built by name from the registry."""

from __future__ import annotations

from etuner_ros.core.policies.adabn import AdaBNPolicy
from etuner_ros.core.policies.adabn_memory import AdaBNMemoryPolicy
from etuner_ros.core.policies.base import Decision, Observation, Policy
from etuner_ros.core.policies.etuner import ETunerPolicy
from etuner_ros.core.policies.immediate import ImmediatePolicy
from etuner_ros.core.policies.immediate_adabn import ImmediateAdaBNPolicy
from etuner_ros.core.policies.lazytune import LazyTunePolicy
from etuner_ros.core.policies.none import NonePolicy
from etuner_ros.core.policies.periodic import PeriodicPolicy
from etuner_ros.core.policies.simfreeze import SimFreezePolicy

_REGISTRY: dict[str, type[Policy]] = {
    "none": NonePolicy,
    "immediate": ImmediatePolicy,
    "periodic": PeriodicPolicy,
    "lazytune": LazyTunePolicy,
    "simfreeze": SimFreezePolicy,
    "etuner": ETunerPolicy,
    "adabn": AdaBNPolicy,
    "immediate_adabn": ImmediateAdaBNPolicy,
    "adabn_memory": AdaBNMemoryPolicy,
}
POLICY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_policy(name: str, **params) -> Policy:
    """Build a policy by name; ``params`` go to its constructor (unknown ones raise)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of: "
                         f"{', '.join(POLICY_NAMES)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for policy {name!r}: {exc}") from None


__all__ = ["POLICY_NAMES", "Decision", "Observation", "Policy", "make_policy"]
