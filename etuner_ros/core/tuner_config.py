"""Every default of the continual tuner in one place, with the measurements behind them.

Its own module because the tuner node (ROS parameters take their defaults from it) and the
benchmark (``bench/config.py``) build one, and the DEV-seed evidence for each constant belongs
beside the constant, not inside the engine. Policy parameters go to ``make_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etuner_ros.core.drift import DriftConfig
from etuner_ros.core.simfreeze import SimFreezeConfig
from etuner_ros.core.trainer import TrainConfig


@dataclass
class TunerConfig:
    """All tuner defaults in one place (policy parameters go to ``make_policy``)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    simfreeze: SimFreezeConfig = field(default_factory=SimFreezeConfig)
    policy_params: dict = field(default_factory=dict)
    unlabelled_capacity: int = 256  # newest unlabelled frames kept for pseudo-labels
    accuracy_window: int = 24       # labels behind recent_accuracy
    accuracy_min: int = 8           # recent_accuracy is None below this many
    drift_every: int = 4            # embed every n-th observed frame for the drift detector:
    #                                 embedding every frame cost ~20% of etuner's tuning time
    adabn_frames: int = 48          # camera frames whose BN statistics a round adopts ...
    adabn_window: int = 48          # ... spread over the newest this many (6 s at 8 fps)
    adabn_momentum: float = 1.0     # 1.0: replace BN statistics; <1: blend with the old ones
    adabn_depth: int = 3            # front layer groups whose BN statistics AdaBN re-estimates
    #                                 (0: all). Shallow statistics follow light, noise and
    #                                 camera; deep ones follow which few objects the window
    #                                 showed (a robot looks at one object for 1-4 s). DEV seeds
    #                                 100/101, adabn: all layers over 160 frames 46.9/57.7 %;
    #                                 depth 3 over 48 frames 52.1/63.9 %, over 80 56.0/59.3 %;
    #                                 depth 4 over 48 frames 45.7/48.1 %. A short window follows
    #                                 a new scene sooner, and shallow statistics need few objects
    pseudo_pool: int = 32           # pseudo-label only the newest frames (the current scene)
    pseudo_min_accuracy: float = 0.0  # no pseudo-labels while recent_accuracy is below this.
    #                                 0.7 (until 2026-11-23) meant none at all: LazyTune tunes
    #                                 when accuracy has dropped, so at every round it read
    #                                 0.23-0.63 and not one pseudo-label was made on any seed.
    #                                 DEV 100-103, 0.7 -> 0.0: synthetic 69.48 -> 69.52 % (per
    #                                 seed -3.9..+2.9: noise), digits 59.70 -> 60.52 % (4 of 4
    #                                 seeds up, +0.8); the confidence threshold and the gate stay
    pseudo_per_label: float = 1.0   # at most this many pseudo-labels per real label in a round
