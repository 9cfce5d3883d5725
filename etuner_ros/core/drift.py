"""Scenario-change detector on the deployed model's penultimate features.

Rule (our design; the paper gives none): keep a *reference* window of features (what the model
was last adapted to) and a *recent* window of the newest ``window`` features. The score is the
distance between the window means in units of its own standard error under "no change":

    score = ||mean(recent) - mean(ref)|| / sqrt(tr(Cov_ref) * (1/n_recent + 1/n_ref))

so it is ~1 when both windows come from one distribution whatever the feature width, and grows
with sqrt(window) for a real shift. ``changed`` turns on when the score reaches ``on_threshold``
for ``confirm`` consecutive updates (one noisy batch cannot trigger a round) and off only when
it falls below ``off_threshold`` (hysteresis) or when a round absorbed the change
(:meth:`reset_reference`, which also starts a ``cooldown`` of fresh features during which no
change can be declared, so the half-filled new windows do not re-trigger at once).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class DriftConfig:
    """Defaults in one place. Units: features (one per observed frame)."""

    window: int = 24          # recent window length (the tuner embeds every 4th frame: 12 s)
    reference: int = 48       # reference window length (filled after each reset)
    min_recent: int = 8       # no score until this many recent features
    on_threshold: float = 3.0  # within one scene the score stays below ~2 at these windows;
    off_threshold: float = 1.5  # a dim light reads ~3.2 from the starting model
    confirm: int = 2          # consecutive updates at/above on_threshold
    cooldown: int = 4         # features after a reset before a change may be declared


class DriftDetector:
    """See the module docstring. Not thread-safe on its own: the tuner holds its lock."""

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()
        self._ref: list[np.ndarray] = []
        self._recent: deque[np.ndarray] = deque(maxlen=self.config.window)
        self._ref_stats: tuple[np.ndarray, float] | None = None
        self.score = 0.0
        self.changed = False
        self._above = 0
        self._cooldown = 0
        self.updates = 0

    # --- state ---------------------------------------------------------------------------
    @property
    def reference_size(self) -> int:
        return len(self._ref)

    def recent_features(self) -> np.ndarray:
        return np.stack(self._recent) if self._recent else np.zeros((0, 0))

    def reset_reference(self, reference: np.ndarray | None = None) -> None:
        """A round absorbed the change: the new normal is ``reference`` (e.g. the recent frames
        re-embedded by the new model) or, if None, refills from the next features."""
        self._ref = [] if reference is None else [np.asarray(r, np.float64) for r in reference]
        self._ref = self._ref[-self.config.reference:]
        self._ref_stats = None
        self._recent.clear()
        self.changed, self._above, self.score = False, 0, 0.0
        self._cooldown = self.config.cooldown

    # --- scoring -------------------------------------------------------------------------
    def update(self, features: np.ndarray) -> float:
        """Add ``[N, D]`` features (oldest first); return the current score."""
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim == 1:
            feats = feats[None, :]
        cfg = self.config
        for f in feats.reshape(feats.shape[0], -1) if feats.size else ():
            self.updates += 1
            if self._cooldown > 0:
                self._cooldown -= 1
            if len(self._ref) < cfg.reference:
                self._ref.append(f)
                self._ref_stats = None
                continue
            self._recent.append(f)
        self.score = self._score()
        if self.score >= cfg.on_threshold and self._cooldown == 0:
            self._above += 1
            if self._above >= cfg.confirm:
                self.changed = True
        else:
            self._above = 0
            if self.score < cfg.off_threshold:
                self.changed = False
        return self.score

    def _score(self) -> float:
        cfg = self.config
        if len(self._ref) < max(2, cfg.min_recent) or len(self._recent) < cfg.min_recent:
            return 0.0
        if self._ref_stats is None:
            ref = np.stack(self._ref)
            mu = ref.mean(axis=0)
            spread = float(((ref - mu) ** 2).sum(axis=1).mean())
            self._ref_stats = (mu, spread)
        mu, spread = self._ref_stats
        recent = np.stack(self._recent)
        se = np.sqrt(max(spread, 1e-12) * (1.0 / len(recent) + 1.0 / len(self._ref)))
        return float(np.linalg.norm(recent.mean(axis=0) - mu) / se)
