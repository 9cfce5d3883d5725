"""Home recall: the starting model answers again while the camera is back in its own scene.

Why: the starting model was trained for the scene the robot was installed in (its "home": the
day kitchen, the day desk). When the camera returns there after other scenes, the tuned model
has moved away from it: BatchNorm statistics re-estimated on the few objects of a short window
and weights trained on other scenes' labels cost the returning scene 6-26 points against the
starting model (issue 6, criterion 4; README). Re-adapting cannot fix that in time, because a
window of a returning scene shows too few objects to re-estimate statistics from. Recognising
the scene can: the starting model is already right there.

The scene signature is model-free and cheap: per frame, the mean and spread of each colour
channel over the frame's border (outer eighth: the room and its light, mostly not the object in
the centre) and each channel's mean absolute horizontal gradient over the whole frame (noise
raises it, blur lowers it). The home's mean and per-frame spread of these nine numbers come
from the starting model's training frames. The newest ``window`` frames are *at home* when the
root mean square over the nine of ``(window mean - home mean) / home spread`` is below
``threshold``.

A signature can match a scene the starting model is wrong in (same desk and light, new objects
or a new camera angle). So the caregiver's labels can veto: once at least ``veto_min`` of the
newest ``veto_window`` labels of frames the starting model answered (not the label memory) show
it right less often than ``veto_accuracy``, the tuned model answers again until the camera has
left the vetoed scene: its window's signature ``threshold`` or more from the one the veto was
given in, or away from home for ``veto_hold_s``. (Only the second was the rule at first; in the
rooms stream, whose crops' signatures lie close together, one veto in the night living room
then held through the three home-like scenes after it.) A label-free policy gets no veto
(``veto_min`` 0).

Constants: DEV seeds 100-103 only (bench/config.py). Pure numpy; no ROS, no torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WINDOW = 8            # frames: 1 s of the 8-fps camera
THRESHOLD = 2.0       # DEV 100/101, synthetic home: home windows <= 1.85, other scenes >= 2.16
VETO_WINDOW = 8
VETO_MIN = 4
VETO_ACCURACY = 0.5
VETO_HOLD_S = 5.0
_STRIDE_PX = 64       # features on a frame subsampled to about this many pixels a side
FEATURES = "border_mean_std_grad_v1"  # what scene_features computes; a checkpoint names it
N_FEATURES = 9


@dataclass(frozen=True)
class HomeConfig:
    """When the starting model answers; checked on construction."""

    enabled: bool = True
    window: int = WINDOW
    threshold: float = THRESHOLD
    veto_window: int = VETO_WINDOW
    veto_min: int = VETO_MIN          # 0: no veto (a label-free policy)
    veto_accuracy: float = VETO_ACCURACY
    veto_hold_s: float = VETO_HOLD_S

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if not 0 <= self.veto_min <= self.veto_window:
            raise ValueError(f"veto_min must be in 0..veto_window, got {self.veto_min}")
        if not 0.0 <= self.veto_accuracy <= 1.0:
            raise ValueError(f"veto_accuracy must be in [0, 1], got {self.veto_accuracy}")
        if self.veto_hold_s < 0:
            raise ValueError(f"veto_hold_s must be >= 0, got {self.veto_hold_s}")


def scene_features(image: np.ndarray) -> np.ndarray:
    """The nine numbers of one frame (HxW or HxWxC, any dtype); see the module docstring."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    step = max(1, min(a.shape[0], a.shape[1]) // _STRIDE_PX)
    a = a[::step, ::step, :3].astype(np.float32)  # subsample first: perception's hot path
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    h, w = a.shape[:2]
    bh, bw = max(1, h // 8), max(1, w // 8)
    border = np.concatenate([a[:bh].reshape(-1, 3), a[-bh:].reshape(-1, 3),
                             a[bh:-bh, :bw].reshape(-1, 3), a[bh:-bh, -bw:].reshape(-1, 3)])
    grad = np.abs(np.diff(a, axis=1)).mean(axis=(0, 1)) if w > 1 else np.zeros(3, np.float32)
    return np.concatenate([border.mean(0), border.std(0), grad]).astype(np.float64)


class HomeSignature:
    """The home's per-feature mean and per-frame spread, from the starting model's frames."""

    def __init__(self, mean: np.ndarray, spread: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.spread = np.maximum(np.asarray(spread, dtype=np.float64), 1e-3)

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray]) -> HomeSignature:
        if len(images) < 2:
            raise ValueError("a home signature needs at least 2 frames")
        f = np.stack([scene_features(im) for im in images])
        return cls(f.mean(0), f.std(0))

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists, for a checkpoint's ``extra`` (``sim/pretrain.py`` saves it there)."""
        return {"features": FEATURES, "mean": self.mean.tolist(), "spread": self.spread.tolist()}

    @classmethod
    def from_dict(cls, data: object) -> HomeSignature:
        """The inverse of :meth:`to_dict`; ValueError with the reason for anything else."""
        if not isinstance(data, dict) or data.get("features") != FEATURES:
            raise ValueError(f"not a home signature of features {FEATURES!r}")
        arrays = []
        for key in ("mean", "spread"):
            try:
                a = np.asarray(data.get(key), dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"home signature: {key} is not a list of numbers") from None
            if a.shape != (N_FEATURES,) or not np.all(np.isfinite(a)):
                raise ValueError(f"home signature: {key} needs {N_FEATURES} finite numbers")
            arrays.append(a)
        if np.any(arrays[1] <= 0):
            raise ValueError("home signature: spread must be > 0")
        return cls(*arrays)

    def distance(self, features: np.ndarray) -> float:
        """How far the mean of ``features`` (n x 9) lies from home, in per-frame spreads."""
        z = (np.asarray(features).mean(0) - self.mean) / self.spread
        return float(np.sqrt(np.mean(z ** 2)))


class HomeRecall:
    """Whether the starting model answers the frames in view now; see the module docstring."""

    def __init__(self, signature: HomeSignature, config: HomeConfig | None = None) -> None:
        self.signature = signature
        self.config = cfg = config or HomeConfig()
        self._recent: deque[np.ndarray] = deque(maxlen=cfg.window)
        self._outcomes: deque[bool] = deque(maxlen=max(1, cfg.veto_window))
        self._vetoed = False
        self._vetoed_at: np.ndarray | None = None  # the window's mean features at the veto
        self._using = False
        self.episode = 0    # counts the starting model's turns; a label names its turn
        self._away_since: float | None = None
        self.distance = float("inf")
        self.answered = 0   # frames the starting model answered
        self.vetoes = 0

    def observe(self, images: Sequence[np.ndarray], now: float) -> bool:
        """Frames about to be answered at ``now``: True when the starting model answers them."""
        cfg = self.config
        if not cfg.enabled or not images:
            return False
        for im in images:
            self._recent.append(scene_features(im))
        window = np.stack(self._recent)
        self.distance = self.signature.distance(window)
        home = len(self._recent) == cfg.window and self.distance < cfg.threshold
        if home:
            self._away_since = None
        elif self._away_since is None:
            self._away_since = now
        if self._vetoed and (
                (self._away_since is not None and now - self._away_since >= cfg.veto_hold_s)
                or (len(self._recent) == cfg.window and self._vetoed_at is not None
                    and self._moved(window) >= cfg.threshold)):
            self._vetoed = False
        use = home and not self._vetoed
        if use and not self._using:
            self.episode += 1
            self._outcomes.clear()
        self._using = use
        if use:
            self.answered += len(images)
        return use

    def _moved(self, window: np.ndarray) -> float:
        """How far ``window``'s mean lies from where the veto was given, in home spreads."""
        z = (window.mean(0) - self._vetoed_at) / self.signature.spread
        return float(np.sqrt(np.mean(z ** 2)))

    def label(self, correct: bool, episode: int) -> None:
        """A caregiver's label of a frame the starting model answered in turn ``episode``
        (labels arrive after the answer): was it right? Labels of an earlier turn are stale."""
        cfg = self.config
        if cfg.veto_min == 0 or self._vetoed or episode != self.episode:
            return
        self._outcomes.append(bool(correct))
        if len(self._outcomes) >= cfg.veto_min and \
                float(np.mean(self._outcomes)) < cfg.veto_accuracy:
            self._vetoed = True
            self._vetoed_at = np.stack(self._recent).mean(0) if self._recent else None
            self.vetoes += 1
            self._outcomes.clear()
