"""A simulated caregiver who now and then tells the robot what an object really is.

Real caregivers look at a small fraction of what the robot sees; when they look and the robot is
wrong they correct it, when it is right they only sometimes bother to confirm. Which frames are
looked at (and which right answers get confirmed) depends only on the seed and the frame's key,
never on the model's prediction, so every tuning policy run on one seed is offered feedback on
the same frames: the comparison between policies is not confounded by luck.
"""

from __future__ import annotations

from dataclasses import dataclass

_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Feedback:
    """What the caregiver says: the true label, and whether it confirms the robot's answer."""

    true_label: str
    confirms: bool


def _splitmix64(x: int) -> int:
    """A tiny counter-based hash: independent uniform bits per (seed, key), no RNG state."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _uniform(seed: int, key: int, stream: int) -> float:
    bits = _splitmix64(_splitmix64(_splitmix64(seed & _MASK) ^ (key & _MASK)) ^ stream)
    return (bits >> 11) / float(1 << 53)


class Caregiver:
    """Decides, frame by frame, whether feedback is given and which kind.

    ``fraction``: probability that the caregiver looks at a frame. ``confirm_fraction``:
    probability that a frame looked at and predicted correctly gets a confirmation (a wrong
    prediction looked at always gets a correction).
    """

    def __init__(self, fraction: float = 0.1, seed: int = 0,
                 confirm_fraction: float = 0.5) -> None:
        for name, value in (("fraction", fraction), ("confirm_fraction", confirm_fraction)):
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        self.fraction = float(fraction)
        self.confirm_fraction = float(confirm_fraction)
        self.seed = int(seed)
        self._next_key = 0
        self.frames_seen = 0
        self.corrections = 0
        self.confirmations = 0

    def feedback(self, true_label: str, predicted: str | None,
                 key: int | None = None) -> Feedback | None:
        """Feedback on one frame, or None when the caregiver stays silent.

        ``predicted`` is the model's class name (None: no prediction, treated as wrong). ``key``
        identifies the frame (e.g. ``Frame.index``); by default calls are numbered 0, 1, 2, ...
        Pass it when frames may be skipped or reordered so decisions stay tied to frames.
        """
        if key is None:
            key = self._next_key
        self._next_key = int(key) + 1
        self.frames_seen += 1
        if _uniform(self.seed, int(key), 1) >= self.fraction:
            return None
        if predicted != true_label:
            self.corrections += 1
            return Feedback(true_label, confirms=False)
        if _uniform(self.seed, int(key), 2) < self.confirm_fraction:
            self.confirmations += 1
            return Feedback(true_label, confirms=True)
        return None

    __call__ = feedback

    def stats(self) -> dict[str, int]:
        """Counters since construction: frames offered, corrections and confirmations given."""
        return {"frames": self.frames_seen, "corrections": self.corrections,
                "confirmations": self.confirmations}
