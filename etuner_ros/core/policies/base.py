"""What a policy sees and what it answers: one decision per poll, with a human reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Observation:
    """The tuner's view at ``now`` (seconds on whatever clock the caller uses).

    ``recent_accuracy`` is the deployed model's accuracy on the newest corrections and
    confirmations (None until enough arrived); ``change_score``/``change_detected`` come from the
    drift detector (0/False for policies that do not use it); ``rejected_streak`` counts the
    latest rounds in a row whose candidate was rejected (0 after an accepted round).
    """

    now: float
    pending_labels: int
    new_labels_since_decide: int
    seconds_since_last_round: float
    seconds_since_oldest_pending: float
    inference_fps: float
    recent_accuracy: float | None
    change_score: float
    change_detected: bool
    rejected_streak: int = 0  # consecutive latest rounds whose candidate failed validation
    input_shift: float = 0.0  # how far the camera's input statistics moved since the serving
    #                           model's BatchNorm statistics were last adapted (semi-supervised)


@dataclass
class Decision:
    """``unfreeze`` asks SimFreeze to thaw every group for this round (scenario change);
    ``bn_only`` asks for an AdaBN-only round (no labels, no training: the serving model adopts
    the newest frames' BatchNorm statistics)."""

    tune: bool
    reason: str
    unfreeze: bool = False
    bn_only: bool = False


class Policy:
    """Base: decides *when* to tune; the flags say *how* the tuner runs a round for it."""

    name = "base"
    uses_simfreeze = False
    uses_semi_supervised = False
    uses_drift = False  # whether the tuner must embed frames for the change detector

    def decide(self, obs: Observation) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Parameters for logs and results.json."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def no_labels(obs: Observation) -> Decision | None:
    """Shared first check: nothing to learn from."""
    if obs.pending_labels <= 0:
        return Decision(False, "idle: no new labels")
    return None
