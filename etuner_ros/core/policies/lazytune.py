"""LazyTune: delay and merge rounds until they are worth their cost.

Rule (our design; checked in this order, the first that fires wins):

1. no pending labels -> idle.
2. *staleness*: the oldest pending label has waited ``max_wait_s`` (90 s) -> tune. Bounds how
   long a correction can be ignored, whatever the other signals say.
3. *scenario change* (drift detector) and at least ``min_labels`` (24) pending -> tune now and
   unfreeze: the home changed, the model is stale for everything it sees.
4. *accuracy drop*: the deployed model's accuracy on recent corrections+confirmations is below
   ``acc_threshold`` (0.5; the caregiver corrects errors more than it confirms successes, so
   this ratio reads lower than true accuracy) and ``min_labels`` pending -> tune. With
   ``backoff`` (default on), each rejected round in a row raises that to
   ``min_labels * (1 + streak)``: a round that failed validation is re-tried only with more
   new evidence, not with the same.
5. *enough data*: pending >= target, where target = ``batch_labels`` (48) scaled by
   ``fps_ref / fps`` (8 fps) and clipped to [``min_labels``, ``max_labels``]: the more frames
   the robot serves per second, the more a better model is worth, so merge less.
6. otherwise defer (the batch keeps growing and is merged into one later round).

``min_labels`` 24, not 6: a robot's camera shows one object for 1-4 s, so 6-10 new labels show
one to three objects, and a round on them teaches "it is always X" (DEV seeds 100/101, etuner:
6 -> 40.4/52.1 %, 24 -> 44.9/61.9 %, 32 -> 45.7/48.1 % with 10 epochs).
"""

from __future__ import annotations

from etuner_ros.core.policies.base import Decision, Observation, Policy, no_labels


class LazyTunePolicy(Policy):
    name = "lazytune"
    uses_drift = True

    def __init__(self, max_wait_s: float = 90.0, min_labels: int = 24, batch_labels: int = 48,
                 max_labels: int = 160, acc_threshold: float = 0.5, fps_ref: float = 8.0,
                 backoff: bool = True) -> None:
        if max_wait_s <= 0 or min_labels < 1 or batch_labels < 1 or fps_ref <= 0:
            raise ValueError("lazytune: max_wait_s, fps_ref > 0; min_labels, batch_labels >= 1")
        self.max_wait_s = float(max_wait_s)
        self.min_labels = int(min_labels)
        self.batch_labels = int(batch_labels)
        self.max_labels = int(max(max_labels, min_labels))
        self.acc_threshold = float(acc_threshold)
        self.fps_ref = float(fps_ref)
        self.backoff = bool(backoff)

    def target(self, fps: float) -> int:
        """Labels to merge before a round in steady state, for this inference rate."""
        scaled = self.batch_labels * self.fps_ref / max(fps, 1e-3) if fps > 0 else \
            self.batch_labels
        return int(min(self.max_labels, max(self.min_labels, round(scaled))))

    def decide(self, obs: Observation) -> Decision:
        idle = no_labels(obs)
        if idle:
            return idle
        n = obs.pending_labels
        if obs.seconds_since_oldest_pending >= self.max_wait_s:
            return Decision(True, f"tune: staleness {obs.seconds_since_oldest_pending:.0f} s >= "
                                  f"{self.max_wait_s:.0f} s ({n} labels)")
        if obs.change_detected and n >= self.min_labels:
            return Decision(True, f"tune: scenario change (score {obs.change_score:.1f}), "
                                  f"{n} labels", unfreeze=True)
        acc = obs.recent_accuracy
        need = self.min_labels * (1 + obs.rejected_streak) if self.backoff else self.min_labels
        if acc is not None and acc < self.acc_threshold and n >= need:
            return Decision(True, f"tune: accuracy {acc:.2f} < {self.acc_threshold:.2f}, "
                                  f"{n} labels")
        target = self.target(obs.inference_fps)
        if n >= target:
            return Decision(True, f"tune: {n} labels >= target {target} "
                                  f"(at {obs.inference_fps:.1f} fps)")
        acc_s = "n/a" if acc is None else f"{acc:.2f}"
        change = "change pending labels" if obs.change_detected else "no change"
        return Decision(False, f"defer: {n}/{target} labels pending, acc {acc_s} >= "
                               f"{self.acc_threshold:.2f}, {change} "
                               f"(score {obs.change_score:.1f})")
