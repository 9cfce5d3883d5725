"""What changed in front of the camera: input-statistics shift and scenario change.

Two detectors with different jobs and costs:

* :class:`InputShift` (no model, a few array reductions): how far the per-channel mean/std of
  the newest preprocessed frames moved since the serving model's BatchNorm statistics were
  adapted. The reference is keyed by model *version*: an adapted candidate's statistics are
  remembered under its version and become the reference only when that version is deployed,
  once (deploying a version again is a no-op, so a model announced twice cannot keep asking
  for BN rounds). A rejected candidate's statistics are never adopted.
* :class:`ChangeWatch` (penultimate features of a fixed *embedder* model, every ``every``-th
  frame): the :class:`DriftDetector` for "the home changed" (LazyTune tunes now, SimFreeze
  thaws). The embedder is the model that served when the reference was last set, and it stays
  fixed until a detected change has been absorbed, i.e. until new weights are deployed while a
  change is flagged: then embedder and reference move to the new model (the recent window
  re-embedded by it). Swaps without a flagged change, BN-only swaps included, keep both.
  Re-basing at every swap left the detector blind: under immediate timing a swap every few
  seconds emptied the reference before it refilled (48 features, 24 s of camera), and at every
  BN refresh each scene became "the new normal" seconds after it began, so a change was never
  confirmed. A fixed embedder costs nothing extra (the same forward pass per selected frame)
  and makes the score compare like with like.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from etuner_ros.core.drift import DriftConfig, DriftDetector
from etuner_ros.core.model import ModelBundle


def input_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and std of a preprocessed batch ``[N, 3, S, S]``."""
    return torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))])


class InputShift:
    """See the module docstring. ``min_frames``: no shift is measured from fewer frames."""

    #: references kept of versions that served before (a rollback restores its own)
    KEEP_SERVED = 32

    def __init__(self, min_frames: int, serving: int | None = None) -> None:
        self.min_frames = max(2, int(min_frames))
        self.reference: torch.Tensor | None = None
        self.shift = 0.0
        self._candidates: dict[int, torch.Tensor] = {}
        self._serving = serving
        self._served: dict[int, torch.Tensor] = {}

    def update(self, frames: torch.Tensor | None) -> float:
        """The newest frames (``[N, 3, S, S]``, or None while the camera gave fewer than two);
        the first full window is the reference of the starting model."""
        if frames is None or frames.shape[0] < self.min_frames:
            return self.shift
        s = input_stats(frames)
        if self.reference is None:
            self.reference = s
        self.shift = float((s - self.reference).abs().max())
        return self.shift

    def candidate_adapted(self, version: int, frames: torch.Tensor) -> None:
        """Candidate ``version`` adopted the BN statistics of ``frames``."""
        self._candidates[int(version)] = input_stats(frames)

    def discard(self, version: int) -> None:
        """Candidate ``version`` was rejected: its statistics must never become the reference."""
        self._candidates.pop(int(version), None)

    def deployed(self, version: int) -> None:
        """``version`` serves now: if it was adapted, its frames are the new reference; if it
        served before (a rollback), its own reference again. The same version again: no-op."""
        version = int(version)
        if version == self._serving:
            return
        if self._serving is not None and self.reference is not None:
            self._served[self._serving] = self.reference
            while len(self._served) > self.KEEP_SERVED:
                self._served.pop(next(iter(self._served)))
        self._serving = version
        stats = self._candidates.pop(version, None)
        self._candidates = {v: s for v, s in self._candidates.items() if v > version}
        if stats is None:
            stats = self._served.get(version)
        if stats is not None:
            self.reference = stats
            self.shift = 0.0  # measured again on the next frames


class ChangeWatch:
    """Feeds the drift detector every ``every``-th frame's embedding by ``embedder``."""

    def __init__(self, config: DriftConfig, every: int, embedder: ModelBundle) -> None:
        self.detector = DriftDetector(config)
        self.every = max(1, int(every))
        self.embedder = embedder
        self._count = 0
        self._window: deque[torch.Tensor] = deque(maxlen=config.window)

    @property
    def score(self) -> float:
        return float(self.detector.score)

    @property
    def changed(self) -> bool:
        return bool(self.detector.changed)

    def select(self, n: int) -> list[int]:
        """Which of the next ``n`` frames the detector embeds (advances the frame counter)."""
        sel = [i for i in range(n) if (self._count + i) % self.every == 0]
        self._count += n
        return sel

    def update(self, x: torch.Tensor,
               embed: Callable[[ModelBundle, torch.Tensor], torch.Tensor]) -> float:
        """Embed the selected frames ``x`` with the embedder and score them."""
        if x.shape[0] == 0:
            return self.score
        feats = embed(self.embedder, x)
        self._window.extend(x)
        return self.detector.update(np.asarray(feats.detach().numpy()))

    def round_absorbed(self) -> None:
        """A round handled the change but the serving model stays: the current frames, as the
        embedder sees them, are the new normal (else every poll would start a round for it)."""
        if self.detector.changed:
            self.detector.reset_reference(self.detector.recent_features())

    def weights_deployed(self, bundle: ModelBundle,
                         embed: Callable[[ModelBundle, torch.Tensor], torch.Tensor]) -> int:
        """New weights serve. Only while a change is flagged: ``bundle`` becomes the embedder
        and the recent window as it embeds it the reference. Returns how many frames were
        embedded (for the cost ledger)."""
        if not self.detector.changed:
            return 0
        self.embedder = bundle
        n = len(self._window)
        ref = embed(bundle, torch.stack(list(self._window))).detach().numpy() \
            if n >= 2 else None
        self.detector.reset_reference(ref)
        self._window.clear()
        return n if n >= 2 else 0
