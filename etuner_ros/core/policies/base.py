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
    #                           model's BatchNorm statistics were last adapted (policies with
    #                           ``adapts_bn``; 0 while a rejected BN round waits for new frames)


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
    """Base: decides *when* to tune; the flags say *how* the tuner runs a round for it.

    ``uses_semi_supervised``: pseudo-labels from unlabelled frames in training rounds.
    ``adapts_bn``: the tuner tracks the camera's input statistics (``Observation.input_shift``)
    and runs the BN-only rounds the policy asks for. ``adabn_in_rounds``: every training round
    first re-estimates BN statistics on the newest camera frames. ``label_free``: the policy
    never trains on a label, not even to accept a candidate (its gate is label-free).
    ``label_memory``: inference answers from the caregiver's labels for near-identical views
    (``core/label_memory.py``); every policy that learns from labels has it, so no row's gain
    over another is the memory.
    """

    name = "base"
    uses_simfreeze = False
    uses_semi_supervised = False
    uses_drift = False  # whether the tuner must embed frames for the change detector
    adapts_bn = False
    adabn_in_rounds = False
    label_free = False
    label_memory = True

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


#: Input-statistics shift that triggers a BN-only round (``adabn``, ``immediate_adabn``,
#: ``etuner``). Max |change| of per-channel mean/std of the preprocessed frames: within one
#: scene it stays below ~0.2 on the DEV seeds, a new light, room or camera moves it 0.5-2.
ADAPT_SHIFT = 0.3


def check_shift(value: float) -> float:
    if value <= 0:
        raise ValueError("adapt_shift must be > 0")
    return float(value)


def bn_shift(obs: Observation, threshold: float, why: str = "") -> Decision | None:
    """A BN-only round when the camera's input statistics moved ``threshold`` or more."""
    if obs.input_shift >= threshold:
        tail = f" ({why})" if why else ""
        return Decision(True, f"adapt BN: input statistics moved {obs.input_shift:.2f} >= "
                              f"{threshold:.2f}{tail}", bn_only=True)
    return None
